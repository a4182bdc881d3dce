"""`onnxport verify`: check an existing artifact again, files first, then numerics."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onnxport.artifact.writing import MANIFEST, REPORT, sha256_of
from onnxport.errors import BadInput
from onnxport.host import PluginHost
from onnxport.records import LoadRequest, RunOptions, Tolerance
from onnxport.flow.sources import pick_backend, source_from_object, source_from_text
from onnxport.flow.verification import Reference, Verification, VerificationSettings, verify_candidate


@dataclass
class ArtifactCheck:
    target: str
    directory: Path
    integrity_problems: list[str] = field(default_factory=list)
    verification: Verification | None = None

    @property
    def passed(self) -> bool:
        return (not self.integrity_problems and self.verification is not None
                and self.verification.passed)


def find_manifests(path: Path) -> list[Path]:
    if (path / MANIFEST).is_file():
        return [path / MANIFEST]
    found = sorted(path.glob(f"*/{MANIFEST}")) if path.is_dir() else []
    if not found:
        raise BadInput(f"{path} is not an onnxport artifact (no {MANIFEST} in it or "
                       "its subdirectories)", "give the --output directory of a conversion")
    return found


def check_files(directory: Path, manifest: dict[str, Any]) -> list[str]:
    """Every file the manifest lists, with the size and sha256 it recorded."""
    problems = []
    for entry in manifest.get("files", []):
        path = directory / entry["path"]
        if not path.is_file():
            problems.append(f"{entry['path']} is missing")
        elif path.stat().st_size != entry["bytes"]:
            problems.append(f"{entry['path']} has {path.stat().st_size} bytes, the "
                            f"manifest says {entry['bytes']}")
        elif sha256_of(path) != entry["sha256"]:
            problems.append(f"{entry['path']} does not match its sha256 in the manifest")
    return problems


def verify_artifact(path: Path, source: Any, *, weights: str | Path | None,
                    host: PluginHost, trust_code: bool = False,
                    **overrides: Any) -> list[ArtifactCheck]:
    if not path.exists():
        raise BadInput(f"{path} does not exist")
    manifest_paths = find_manifests(path)
    manifests = [json.loads(p.read_text()) for p in manifest_paths]
    first = manifests[0]
    recorded = first["source"]
    weights_path = Path(weights) if weights else (
        Path(recorded["weights"]["path"]) if recorded.get("weights") else None)
    if source is None:
        origin = recorded["origin"]
        if recorded["kind"] == "object" and origin.startswith("<"):
            raise BadInput(f"{path} was made from a Python object ({origin}), which "
                           "cannot be loaded again by name",
                           "pass the source: onnxport verify DIR --source module:function")
        source = origin
    if isinstance(source, (str, Path)):
        src = source_from_text(str(source), weights_path)
    else:
        src = source_from_object(source, origin=repr(type(source)), weights=weights_path)
    backend = pick_backend(host, src, recorded.get("backend"))
    interface = first["interface"]
    dynamic = bool(interface["dynamic_batch"])
    loaded = backend.load(LoadRequest(
        source=src, input_names=tuple(interface["inputs"]),
        output_names=tuple(interface["outputs"]), dynamic_batch=dynamic,
        trust_code=trust_code, options=_recorded_options(first)))
    settings = _settings(manifest_paths[0], overrides)
    checks = [ArtifactCheck(m["target"]["name"], p.parent, check_files(p.parent, m))
              for p, m in zip(manifest_paths, manifests)]
    intact = [(c, m) for c, m in zip(checks, manifests) if not c.integrity_problems]
    if not intact:
        return checks
    session = host.get("runner", backend.runner).open(loaded, RunOptions(
        threads=settings.threads))
    try:
        reference = Reference(session, loaded.input_names, loaded.example_inputs, dynamic,
                              settings)
        for check, manifest in intact:
            recorded_target = manifest["target"]
            budgets = _recorded_tolerances(manifest)
            check.verification = verify_candidate(
                check.directory / manifest["model"], reference,
                host.get("runner", manifest.get("runner") or recorded_target["runner"]),
                RunOptions(providers=tuple(recorded_target["providers"]),
                           threads=settings.threads,
                           graph_optimization_level=recorded_target[
                               "graph_optimization_level"]),
                loaded.input_names, loaded.output_names, dynamic,
                lambda output, budgets=budgets: budgets.get(output) or
                settings.tolerance_for(output, Tolerance()))
    finally:
        session.close()
    return checks


def _recorded_options(manifest: dict[str, Any]) -> dict[str, Any]:
    """Backend options the conversion used that loading needs again (custom objects)."""
    return dict(manifest["source"].get("load_options") or {})


def _recorded_tolerances(manifest: dict[str, Any]) -> dict[str, Tolerance]:
    """The budget each output of the shipped model was held to (fp32 or INT8)."""
    batches = manifest["verification"].get("batches") or []
    return {out["name"]: Tolerance.from_dict(out["tolerance"])
            for out in (batches[0]["outputs"] if batches else [])}


def _settings(manifest_path: Path, overrides: dict[str, Any]) -> VerificationSettings:
    """The settings the conversion used (from report.json), then the caller's overrides."""
    report_path = next((p for p in (manifest_path.parent / REPORT,
                                    manifest_path.parent.parent / REPORT) if p.is_file()),
                       None)
    recorded: dict[str, Any] = {}
    if report_path is not None:
        recorded = json.loads(report_path.read_text()).get("verification_settings", {})
    values = {
        "seed": recorded.get("seed", 0),
        "batch_sizes": tuple(recorded["batch_sizes"]) if recorded.get("batch_sizes")
        else None,
        "input_ranges": {k: tuple(v) for k, v in recorded.get("input_ranges", {}).items()},
        "tolerance": Tolerance.from_dict(recorded["tolerance"])
        if recorded.get("tolerance") else None,
        "output_tolerances": {k: Tolerance.from_dict(v) for k, v in
                              recorded.get("output_tolerances", {}).items()},
        "latency_runs": recorded.get("latency_runs", 20),
        "classifiers": frozenset(recorded.get("classifiers", ())),
    }
    if recorded.get("data"):
        values["data"] = Path(recorded["data"])
    values.update({k: v for k, v in overrides.items() if v is not None})
    return VerificationSettings(**values)
