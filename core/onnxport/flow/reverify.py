"""`onnxport verify`: check an existing artifact again, files first, then numerics.

The source to compare with comes from the user (`--source`, or the Python object): a
manifest only names where the model came from, and naming it is not permission to run
it (docs/security.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onnxport.artifact.reading import Artifact, integrity_problems, open_artifact
from onnxport.conversion import Verification, VerificationSettings
from onnxport.flow.sources import pick_backend, source_from_object, source_from_text
from onnxport.flow.verification import Reference, verify_candidate
from onnxport.host import PluginHost
from onnxport.records import LoadedModel, LoadRequest, RunOptions, Tolerance
from onnxport.tolerance import budget_for, recorded_budgets, settings_from_json


@dataclass
class ArtifactCheck:
    target: str
    directory: Path
    integrity_problems: list[str] = field(default_factory=list)
    verification: Verification | None = None
    not_rerun: str = ""  # why the numerics were not checked again (no source named)

    @property
    def passed(self) -> bool:
        return (not self.integrity_problems and self.verification is not None
                and self.verification.passed)


def verify_artifact(path: Path, source: Any, *, weights: str | Path | None,
                    host: PluginHost, trust_code: bool = False,
                    **overrides: Any) -> list[ArtifactCheck]:
    artifact = open_artifact(path)
    checks = [ArtifactCheck(t.name, t.directory, integrity_problems(t))
              for t in artifact.targets]
    intact = [(c, t) for c, t in zip(checks, artifact.targets) if not c.integrity_problems]
    if not intact:
        return checks
    settings = recorded_settings(artifact, overrides)
    manifest = artifact.targets[0].manifest
    if source is None and trust_code:
        source = recorded_origin(manifest)
        weights = weights or (manifest["source"].get("weights") or {}).get("path")
    if source is None:
        for check in checks:
            check.not_rerun = (
                "the numerics were not checked again: onnxport runs no code because an "
                f"artifact names it (this one names {manifest['source'].get('origin')!r});"
                " name the source with --source, or pass --trust-code to run that one")
        return checks
    loaded, backend = load_recorded_source(manifest, host, source, weights, trust_code)
    dynamic = bool(manifest["interface"]["dynamic_batch"])
    session = host.get("runner", backend.runner).open(
        loaded, RunOptions(threads=settings.threads))
    try:
        reference = Reference(session, loaded.input_names, loaded.example_inputs, dynamic,
                              settings)
        for check, entry in intact:
            recorded_target = entry.manifest["target"]
            budgets = recorded_budgets(entry.manifest["verification"],
                                       str(entry.directory / "manifest.json"))
            check.verification = verify_candidate(
                entry.model, reference,
                host.get("runner", entry.manifest.get("runner") or recorded_target["runner"]),
                RunOptions(providers=tuple(recorded_target["providers"]),
                           threads=settings.threads,
                           graph_optimization_level=recorded_target[
                               "graph_optimization_level"]),
                loaded.input_names, loaded.output_names, dynamic,
                lambda output, budgets=budgets: budget_for(
                    output, target=Tolerance(), settings=settings,
                    stage_budget=budgets.get(output)))
    finally:
        session.close()
    return checks


def recorded_origin(manifest: dict[str, Any]) -> str:
    """The source a manifest names, for a user who trusts the artifact (--trust-code)."""
    recorded = manifest["source"]
    origin = recorded.get("origin")
    if recorded.get("kind") == "object" or not isinstance(origin, str):
        from onnxport.errors import BadInput

        raise BadInput(f"the artifact was made from a Python object ({origin}), which "
                       "cannot be loaded again by name",
                       "pass the source: onnxport verify DIR --source module:function")
    return origin


def load_recorded_source(manifest: dict[str, Any], host: PluginHost, source: Any,
                         weights: str | Path | None, trust_code: bool
                         ) -> tuple[LoadedModel, Any]:
    """Load the source the user named to compare an artifact with, by the interface its
    manifest recorded; returns the loaded model and its backend."""
    recorded = manifest["source"]
    weights_path = Path(weights) if weights else None
    if isinstance(source, (str, Path)):
        src = source_from_text(str(source), weights_path)
    else:
        src = source_from_object(source, origin=repr(type(source)), weights=weights_path)
    backend = pick_backend(host, src, recorded.get("backend"))
    interface = manifest["interface"]
    return backend.load(LoadRequest(
        source=src, input_names=tuple(interface["inputs"]),
        output_names=tuple(interface["outputs"]),
        dynamic_batch=bool(interface["dynamic_batch"]), trust_code=trust_code,
        options=dict(recorded.get("load_options") or {}))), backend


def recorded_settings(artifact: Artifact, overrides: dict[str, Any]
                      ) -> VerificationSettings:
    """The settings the conversion used (from report.json), then the caller's overrides."""
    values = settings_from_json(artifact.verification_settings(),
                                f"{artifact.root / 'report.json'}")
    values.update({k: v for k, v in overrides.items() if v is not None})
    return VerificationSettings(**values)
