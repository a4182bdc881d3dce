"""The candidate models of one target: its passes run on an export, and every model any
of them makes is verified against the source framework.

A pass replaces the model it started from (simplify), or, when it is an `alternative`
(INT8, fusion, fp16), adds a model that competes with it: the chains of stages branch,
and each chain's last model is a candidate. `--optimize thorough` also runs each
alternative pass's `variants` (per-channel INT8, static QDQ INT8, ...) as candidates of
their own. Nothing is written to the artifact here: `flow.choosing` picks the candidate
that ships.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from onnxport.artifact.modelinfo import describe_model
from onnxport.conversion import ConversionRequest, StageResult
from onnxport.errors import ExportFailed, OnnxportError
from onnxport.flow.stages import stage_events
from onnxport.flow.targets import ResolvedTarget, fallback_note
from onnxport.flow.verification import Reference, verify_candidate
from onnxport.host import PluginHost
from onnxport.records import (ExportResult, LoadedModel, Pass, PassContext, RunOptions,
                              Runner, Target, Tolerance)
from onnxport.tolerance import budget_for

# How many chains (candidates) a target may grow to, per --optimize level.
BUDGET = {"fast": 4, "thorough": 12}
LEVELS = tuple(BUDGET)


@dataclass
class TargetRun:
    """What building one target from one export made, before anything is written."""

    choice: ResolvedTarget
    exported: ExportResult
    runner: Runner
    run_options: RunOptions
    stages: list[StageResult] = field(default_factory=list)  # every stage, in run order
    chains: list[list[StageResult]] = field(default_factory=list)  # ok stages each
    required: set[str] = field(default_factory=set)  # passes the shipped model must have
    warnings: list[str] = field(default_factory=list)
    failed_on: list[StageResult] = field(default_factory=list)  # the chain a failure left

    @property
    def target(self) -> Target:
        return self.choice.target

    @property
    def export_passed(self) -> bool:
        return self.stages[0].status == "ok"

    @property
    def failed(self) -> StageResult | None:
        return next((s for s in self.stages if s.status == "failed"), None)


def run_target(host: PluginHost, choice: ResolvedTarget, exported: ExportResult,
               loaded: LoadedModel, reference: Reference, request: ConversionRequest,
               work: Path, timings: dict[str, float]) -> TargetRun:
    """Verify the export for this target, then run its passes on every chain."""
    target = choice.target
    runner = host.get("runner", exported.runner or target.runner)
    run = TargetRun(choice, exported, runner, RunOptions(
        providers=target.providers, provider_options=target.provider_options,
        threads=request.verification.threads,
        graph_optimization_level=target.graph_optimization_level,
        spin_wait=False))  # timed interleaved with the source: see RunOptions
    verified = _verifier(host, run, loaded, reference, request, timings)
    export = verified("export", exported.path, {"exporter": exported.exporter,
                                                "opset": exported.opset})
    run.stages.append(export)
    if choice.reason:
        run.warnings.append(f"{choice.requested} picked {target.name}: {choice.reason}")
    fallback = (fallback_note(target, export.verification.providers)
                if exported.format == "onnx" else "")
    if fallback:
        run.warnings.append(fallback)
    if exported.format != "onnx" and target.passes:
        run.warnings.append(f"passes {', '.join(target.passes)} were not run: they apply "
                            f"to ONNX models and this one is {exported.format}")
    if export.status != "ok":
        return run
    run.chains = [[export]]
    if exported.format == "onnx":
        _run_passes(host, run, request, work / target.name, timings, verified)
    return run


def _run_passes(host: PluginHost, run: TargetRun, request: ConversionRequest, work: Path,
                timings: dict[str, float], verified: Callable) -> None:
    target = run.target
    limit = BUDGET.get(request.optimize, BUDGET["fast"])
    calibrated = request.calibration_data is not None
    for pass_name in target.passes:
        entry = host.registrations("pass").get(pass_name)
        if entry is None or not entry.enabled:
            reason = "no plugin provides it" if entry is None else entry.reason
            run.stages.append(StageResult(pass_name, "skipped", reason=reason))
            run.warnings.append(f"{pass_name} did not run: "
                                + ("no installed plugin provides it" if entry is None
                                   else entry.reason))
            continue
        record: Pass = entry.record
        variants = (record.variants(target, request.optimize, calibrated)
                    if record.variants is not None else None) or [{}]
        if not record.alternative:
            variants = variants[:1]
        branched = len(run.chains) > 1
        chains = []
        for chain in run.chains:
            if record.alternative:
                chains.append(chain)
            for overlay in variants:
                name = _stage_name(pass_name, overlay, chain[-1] if branched else None)
                stage = _run_pass(host, record, target, request, chain[-1].path,
                                  work / _slug(name) / run.exported.path.name, overlay,
                                  timings, verified, name)
                run.stages.append(stage)
                run.warnings += [f"{name}: {note}" for note in stage.warnings]
                if stage.status == "failed":  # a required pass: the target fails
                    run.chains, run.failed_on = [], chain
                    return
                if stage.status == "ok":
                    if stage.settings.get("required"):
                        run.required.add(pass_name)
                    chains.append([*chain, stage])
                elif not record.alternative:
                    if stage.status == "rejected":
                        run.warnings.append(f"{name}: {stage.reason}; kept the previous "
                                            "model")
                    chains.append(chain)
        run.chains = chains[:limit] if len(chains) > limit else chains
        if len(chains) > limit:
            run.warnings.append(f"--optimize {request.optimize} tries at most {limit} "
                                f"candidates; {len(chains) - limit} were left out")


def _verifier(host: PluginHost, run: TargetRun, loaded: LoadedModel, reference: Reference,
              request: ConversionRequest, timings: dict[str, float]) -> Callable:
    target = run.target

    def verified(stage: str, path: Path, settings: dict[str, Any],
                 budget: Tolerance | None = None) -> StageResult:
        with stage_events(host, f"verify {stage}" if stage != "export" else "verify",
                          target.name, timings) as note:
            verification = verify_candidate(
                path, reference, run.runner, run.run_options, loaded.input_names,
                loaded.output_names, request.dynamic_batch,
                lambda output: budget_for(output, target=target.tolerance,
                                          settings=request.verification,
                                          stage_budget=budget))
            note["status"] = "ok" if verification.passed else "failed"
            worst = verification.max_abs
            note["detail"] = verification.problem or (
                "" if worst is None else f"max abs error {worst:.2e}")
        return StageResult(stage, "ok" if verification.passed else "failed", path,
                           describe_model(path), verification, settings)

    return verified


def _run_pass(host: PluginHost, pass_: Pass, target: Target, request: ConversionRequest,
              current: Path, output_path: Path, overlay: Mapping[str, Any],
              timings: dict[str, float], verified: Callable, name: str) -> StageResult:
    applies = pass_.applies(target)
    host.trace(f"pass {pass_.name} applies({target.name}) -> {applies}")
    if not applies:
        return StageResult(name, "skipped", reason=f"does not apply to {target.name}")
    output_path.parent.mkdir(parents=True, exist_ok=True)
    options = {**target.options.get(pass_.name, {}), **overlay}
    context = PassContext(input_path=current, output_path=output_path, target=target,
                          options=options, work_dir=output_path.parent,
                          calibration_data=request.calibration_data)
    try:
        with stage_events(host, name, target.name, timings) as note:
            outcome = pass_.run(context)
            if not outcome.applied:  # observers see what the report says: skipped
                note["status"], note["detail"] = "skipped", outcome.reason or ""
    except OnnxportError:
        raise
    except Exception as exc:
        reason = f"raised {type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
        if not pass_.optional:
            raise ExportFailed(f"pass '{pass_.name}' failed for target {target.name}: "
                               f"{reason}") from exc
        return StageResult(name, "rejected", reason=reason)
    if not outcome.applied:
        return StageResult(name, "skipped", settings=outcome.settings,
                           reason=outcome.reason or "nothing to do",
                           warnings=list(outcome.warnings))
    optional = pass_.optional if outcome.optional is None else outcome.optional
    settings = {**outcome.settings, **({"required": True} if not optional else {})}
    stage = verified(name, Path(outcome.path or output_path), settings, outcome.tolerance)
    stage.warnings = list(outcome.warnings)
    if stage.status != "ok":
        if optional:
            stage.status = "rejected"
            stage.reason = f"its model failed verification ({stage.verification.problem})"
        return stage
    if pass_.accept is not None:
        keep, why = pass_.accept(current, stage.path, context)
        stage.reason = why
        if not keep:
            stage.status = "rejected"
    return stage


def _stage_name(pass_name: str, overlay: Mapping[str, Any],
                after: StageResult | None) -> str:
    """`quantize`, `quantize (method=static)`, `quantize after fuse`: a stage's name says
    which variant it is and, where chains branched, which model it started from."""
    name = pass_name
    if overlay:
        name += " (" + ", ".join(f"{k}={_text(v)}" for k, v in overlay.items()) + ")"
    if after is not None and after.stage not in ("export",):
        name += f" after {after.stage}"
    return name


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:80]

