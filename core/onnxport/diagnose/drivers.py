"""Diagnose's entry points: an artifact (`onnxport diagnose DIR`), two files
(`onnxport diagnose MODEL.onnx --reference/--source`) and a conversion that just failed
(`onnxport convert --diagnose`). Each finds the failing stage and runs the comparison
that fits it."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from onnxport.artifact.modelinfo import read_model_info
from onnxport.artifact.reading import open_artifact
from onnxport.conversion import VerificationSettings
from onnxport.diagnose.compare import capture_hook, compare_onnx_models, compare_with_source
from onnxport.diagnose.feeds import model_feeds, recorded_feeds
from onnxport.diagnose.findings import Diagnosis, Finding
from onnxport.diagnose.graph import Graph
from onnxport.errors import BadInput
from onnxport.flow.inputs import describe_inputs
from onnxport.host import PluginHost
from onnxport.records import LoadedModel, LoadRequest, PassContext, RunOptions, Target, Tolerance
from onnxport.tolerance import from_json, with_overrides


@dataclass
class _Failing:
    """The stage to diagnose for one target, read from a manifest or a live result."""

    target: str
    stage: str  # "export" or a pass name
    model: Path  # the model in the artifact directory
    batch: dict[str, Any] | None  # the recorded batch to reproduce
    tolerance: Tolerance
    problem: str
    providers: tuple[str, ...]
    graph_optimization_level: str
    runner: str
    target_record: Target | None = None
    pass_options: Mapping[str, Any] = field(default_factory=dict)
    exporter: str | None = None  # the exporter that made the model, when known


def _failing_from_manifest(model: Path, manifest: dict[str, Any],
                           host: PluginHost) -> _Failing:
    verification = manifest.get("verification") or {}
    failed_pass = next((p for p in manifest.get("passes", []) if p["status"] == "failed"),
                       None)
    batch, tolerance = _worst_batch(verification.get("batches") or [])
    recorded = manifest["target"]
    target_record = None
    if failed_pass is not None:
        target_record = _target_record(host, recorded)
    applied = [p["name"] for p in manifest.get("passes", []) if p["status"] == "ok"]
    stage = (failed_pass["name"] if failed_pass else
             "export" if not verification.get("passed", False) or not applied else "shipped")
    return _Failing(
        target=recorded["name"], stage=stage,
        model=model, batch=batch, tolerance=tolerance,
        problem=verification.get("problem", ""),
        providers=tuple(recorded.get("providers") or ("CPUExecutionProvider",)),
        graph_optimization_level=recorded.get("graph_optimization_level", "all"),
        runner=recorded.get("runner", "onnxruntime"), target_record=target_record,
        pass_options=dict((recorded.get("options") or {}).get(
            failed_pass["name"], {})) if failed_pass else {},
        exporter=(manifest.get("source") or {}).get("exporter"))


def _worst_batch(batches: list[dict[str, Any]]) -> tuple[dict | None, Tolerance]:
    """The first batch that failed (else the first), and the budget of its first
    failing output (else of its first output)."""
    if not batches:
        return None, Tolerance()
    batch = next((b for b in batches if not b.get("passed", True)), batches[0])
    outputs = batch.get("outputs") or []
    output = next((o for o in outputs if not o.get("passed", True)),
                  outputs[0] if outputs else None)
    return batch, from_json(output["tolerance"]) if output else Tolerance()


def _target_record(host: PluginHost, recorded: dict[str, Any]) -> Target:
    from dataclasses import replace

    try:
        base = host.get("target", recorded["name"])
    except Exception:
        base = Target(name=recorded["name"], description=recorded.get("description", ""))
    return replace(base, providers=tuple(recorded.get("providers") or base.providers),
                   options={k: dict(v) for k, v in (recorded.get("options") or {}).items()})


def reproduce_pass(host: PluginHost, pass_name: str, target: Target,
                   options: Mapping[str, Any], input_path: Path, work_dir: Path) -> Path:
    """Run the failing pass again on the model it started from (passes are
    deterministic), so the failing model can be compared with its input."""
    entry = host.registrations("pass").get(pass_name)
    if entry is None:
        raise BadInput(f"the pass '{pass_name}' that failed is not installed here, so its "
                       "model cannot be made again",
                       "install the plugin that provides it, or compare two models with "
                       "onnxport diagnose FAILING.onnx --reference MODEL.onnx")
    output = Path(work_dir) / pass_name / Path(input_path).name
    output.parent.mkdir(parents=True, exist_ok=True)
    outcome = entry.record.run(PassContext(input_path=Path(input_path), output_path=output,
                                           target=target, options=dict(options),
                                           work_dir=output.parent))
    if not outcome.applied:
        raise BadInput(f"the pass '{pass_name}' did not apply when run again "
                       f"({outcome.reason or 'nothing to do'})")
    return Path(outcome.path or output)


def diagnose_pass(host: PluginHost, failing: _Failing, settings, dynamic_batch: bool,
                  work_dir: Path, candidate: Path | None = None, feeds=None,
                  keep: Path | None = None) -> Diagnosis:
    """Case a: the model a pass made against the model it started from."""
    work_dir = Path(work_dir)
    reference = failing.model
    kept = None
    reproduced = candidate is None
    if candidate is None:
        candidate = reproduce_pass(host, failing.stage, failing.target_record,
                                   failing.pass_options, reference, work_dir / "passes")
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            kept_path = keep / f"{failing.target}-{failing.stage}-{reference.name}"
            kept_path.write_bytes(Path(candidate).read_bytes())
            kept = str(kept_path)
    if feeds is None:
        feeds = recorded_feeds(failing.batch, settings, dynamic_batch)
    runner = host.get("runner", failing.runner)
    options = RunOptions(providers=failing.providers, threads=settings.threads,
                         graph_optimization_level=failing.graph_optimization_level)
    findings, counts, notes = compare_onnx_models(
        Path(candidate), reference, feeds, failing.tolerance, runner, options, work_dir)
    outputs = set(Graph(reference).outputs)
    diverge = any(not f.passed for f in findings if f.reference_tensor in outputs)
    _note_unreproduced(failing, findings, diverge, notes)
    made_again = f"{failing.stage} run again on the model before it"
    return Diagnosis(
        kind="pass", stage=failing.stage, target=failing.target,
        candidate=kept or (made_again if reproduced else str(candidate)),
        reference=f"the model before {failing.stage} ({reference})",
        label=failing.batch["label"] if failing.batch else "inputs",
        inputs=describe_inputs(feeds), tolerance=failing.tolerance, findings=findings,
        outputs_diverge=diverge, counts=counts, notes=notes, kept=kept)


def diagnose_export(host: PluginHost, failing: _Failing, loaded: LoadedModel, settings,
                    dynamic_batch: bool, work_dir: Path, feeds=None) -> Diagnosis:
    """Case b: the exported model against the source framework, layer by layer."""
    if feeds is None:
        feeds = recorded_feeds(failing.batch, settings, dynamic_batch)
    capture = capture_hook(host, loaded.backend)
    runner = host.get("runner", failing.runner)
    options = RunOptions(providers=failing.providers, threads=settings.threads,
                         graph_optimization_level=failing.graph_optimization_level)

    def source_outputs() -> dict:
        backend = host.get("backend", loaded.backend)
        session = host.get("runner", backend.runner).open(
            loaded, RunOptions(threads=settings.threads))
        try:
            return session.run(feeds)
        finally:
            session.close()

    findings, counts, notes = compare_with_source(
        failing.model, loaded, capture, source_outputs, feeds, failing.tolerance, runner,
        options, Path(work_dir))
    backend = host.get("backend", loaded.backend)
    others = [e for e in backend.exporters if e != failing.exporter] \
        if failing.exporter else []
    root = [f for f in findings if f.scope == ""]
    diverge = any(not f.passed for f in root) if root else any(
        not f.passed for f in findings)
    _note_unreproduced(failing, findings, diverge, notes)
    return Diagnosis(
        kind="export", stage=failing.stage if failing.stage == "shipped" else "export",
        target=failing.target, candidate=str(failing.model),
        reference=f"the {loaded.framework} source ({loaded.description}), layer by layer",
        label=failing.batch["label"] if failing.batch else "inputs",
        inputs=describe_inputs(feeds), tolerance=failing.tolerance, findings=findings,
        outputs_diverge=diverge, counts=counts, notes=notes, other_exporters=others)


def _note_unreproduced(failing: _Failing, findings: list[Finding], diverge: bool,
                       notes: list[str]) -> None:
    if failing.problem and not diverge and all(f.passed for f in findings):
        notes.append("verification failed, but with every tensor exposed nothing diverges "
                     "on these inputs: the failure may come from an onnxruntime graph "
                     "optimisation that exposing tensors prevents, or show only at "
                     "another batch")


def diagnose_artifact(path: Path, host: PluginHost, *, source: Any = None,
                      weights: Path | None = None, targets: Sequence[str] = (),
                      atol: float | None = None, rtol: float | None = None,
                      threads: int | None = None, trust_code: bool = False
                      ) -> list[Diagnosis]:
    """`onnxport diagnose DIR`: each target of an artifact (or of a kept `DIR.failed`).
    A target whose pass failed is diagnosed against the model the pass started from;
    any other target against the source the user names (`source`; the one the manifest
    names only with `trust_code`)."""
    from onnxport.flow.reverify import (load_recorded_source, recorded_origin,
                                        recorded_settings)

    artifact = open_artifact(Path(path))
    chosen = [t for t in artifact.targets if not targets or t.name in targets]
    if not chosen:
        known = ", ".join(t.name for t in artifact.targets)
        raise BadInput(f"{path} has no target {', '.join(targets)}", f"it has: {known}")
    settings = recorded_settings(artifact, {"threads": threads})
    loaded = None
    results = []
    with tempfile.TemporaryDirectory(prefix="onnxport-diagnose-") as tmp:
        for index, entry in enumerate(chosen):
            manifest = entry.manifest
            failing = _failing_from_manifest(entry.model, manifest, host)
            failing.tolerance = with_overrides(failing.tolerance, atol, rtol)
            dynamic = bool(manifest["interface"]["dynamic_batch"])
            work = Path(tmp) / str(index)
            if failing.batch is None:
                results.append(_nothing_to_compare(failing))
                continue
            if failing.stage not in ("export", "shipped"):
                results.append(diagnose_pass(host, failing, settings, dynamic, work))
                continue
            if loaded is None:
                named = source
                if named is None and trust_code:
                    named = recorded_origin(manifest)
                    weights = weights or (manifest["source"].get("weights") or {}).get(
                        "path")
                if named is None:
                    raise BadInput(
                        f"target {failing.target}: the export is compared with its source, "
                        "and onnxport runs no code because an artifact names it (this one "
                        f"names {manifest['source'].get('origin')!r})",
                        "name the source with --source, or pass --trust-code to run that "
                        "one")
                loaded, _ = load_recorded_source(manifest, host, named, weights,
                                                 trust_code)
            results.append(diagnose_export(host, failing, loaded, settings, dynamic, work))
    return results


def _nothing_to_compare(failing: _Failing) -> Diagnosis:
    return Diagnosis(
        kind="none", stage=failing.stage, target=failing.target,
        candidate=str(failing.model), reference="", label="", inputs={},
        tolerance=failing.tolerance, findings=[], outputs_diverge=False,
        problem=(f"the model failed a check before any output was compared "
                 f"({failing.problem}); there are no numbers to trace"))


def diagnose_files(candidate: Path, host: PluginHost, *, reference: Path | None = None,
                   source: Any = None, weights: Path | None = None, batch: int = 1,
                   seed: int = 0, data: Path | None = None, atol: float | None = None,
                   rtol: float | None = None, threads: int | None = None,
                   providers: Sequence[str] = ()) -> Diagnosis:
    """`onnxport diagnose MODEL.onnx --reference REF.onnx` (a pass) or `--source SOURCE`
    (the export), on seeded inputs."""
    from onnxport.flow.sources import pick_backend, source_from_object, source_from_text

    candidate = Path(candidate)
    if not candidate.is_file():
        raise BadInput(f"{candidate} does not exist")
    tolerance = with_overrides(Tolerance(), atol, rtol)
    settings = VerificationSettings(threads=threads)
    failing = _Failing(target=None, stage="", model=candidate, batch=None,
                       tolerance=tolerance, problem="",
                       providers=tuple(providers) or ("CPUExecutionProvider",),
                       graph_optimization_level="all", runner="onnxruntime")
    with tempfile.TemporaryDirectory(prefix="onnxport-diagnose-") as tmp:
        if reference is not None:
            if not Path(reference).is_file():
                raise BadInput(f"--reference {reference} does not exist")
            feeds = model_feeds(Path(reference), batch, seed, data)
            failing.model, failing.stage = Path(reference), "pass"
            result = diagnose_pass(host, failing, settings, True, Path(tmp),
                                   candidate=candidate, feeds=feeds)
            result.label = _label(feeds, data, seed)
            result.reference = f"{reference} (the model before the pass)"
            return result
        if source is None:
            raise BadInput("diagnose needs something to compare the model with",
                           "give --reference MODEL.onnx (the model a pass started from) "
                           "or --source SOURCE (the model it was exported from)")
        info = read_model_info(candidate)
        dynamic = bool(info.inputs) and all(t.shape and not isinstance(t.shape[0], int)
                                            for t in info.inputs)
        src = (source_from_text(str(source), weights) if isinstance(source, (str, Path))
               else source_from_object(source, origin=repr(type(source)), weights=weights))
        backend = pick_backend(host, src)
        loaded = backend.load(LoadRequest(
            source=src, input_names=tuple(t.name for t in info.inputs),
            output_names=tuple(t.name for t in info.outputs), dynamic_batch=dynamic))
        shapes = {k: np.shape(v) for k, v in loaded.example_inputs.items()}
        feeds = model_feeds(candidate, batch, seed, data, shapes)
        failing.stage = "export"
        result = diagnose_export(host, failing, loaded, settings, dynamic, Path(tmp),
                                 feeds=feeds)
        result.label = _label(feeds, data, seed)
        return result


def _label(feeds: Mapping[str, np.ndarray], data: Path | None, seed: int) -> str:
    if data is not None:
        return f"data {data}"
    first = next(iter(feeds.values()), None)
    rows = first.shape[0] if first is not None and first.ndim else 1
    return f"batch {rows} (seed {seed})"


def diagnose_conversion(result, host: PluginHost, *, atol: float | None = None,
                        rtol: float | None = None, threads: int | None = None,
                        keep: Path | None = None) -> list[Diagnosis]:
    """`onnxport convert --diagnose`: each failed target of a conversion that just
    failed, with the source model still loaded. The failing stage's input model must be
    on disk (the conversion keeps the failed candidate)."""
    from onnxport.tolerance import settings_from_json

    settings = VerificationSettings(**{
        **settings_from_json(result.report.get("verification_settings") or {}),
        "threads": threads})
    diagnoses = []
    with tempfile.TemporaryDirectory(prefix="onnxport-diagnose-") as tmp:
        for index, artifact in enumerate(a for a in result.artifacts if not a.passed):
            stage = artifact.final
            verification = stage.verification
            batches = [{"label": b.label, "passed": b.passed, "inputs": b.inputs,
                        "outputs": [o.to_dict() for o in b.outputs]}
                       for b in (verification.batches if verification else [])]
            batch, tolerance = _worst_batch(batches)
            target = artifact.target
            failing = _Failing(
                target=target.name, stage=stage.stage, model=artifact.model_path,
                batch=batch, tolerance=with_overrides(tolerance, atol, rtol),
                problem=verification.problem if verification else stage.reason,
                providers=tuple(target.providers),
                graph_optimization_level=target.graph_optimization_level,
                runner=artifact.runner, target_record=target,
                pass_options=dict(target.options.get(stage.stage, {})),
                exporter=result.exported.exporter)
            if batch is None:
                diagnoses.append(_nothing_to_compare(failing))
                continue
            dynamic = bool(artifact.manifest["interface"]["dynamic_batch"])
            work = Path(tmp) / str(index)
            if stage.stage == "export":
                diagnoses.append(diagnose_export(host, failing, result.loaded, settings,
                                                 dynamic, work))
            else:
                diagnoses.append(diagnose_pass(host, failing, settings, dynamic, work,
                                               keep=keep))
    return diagnoses
