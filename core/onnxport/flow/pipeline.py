"""The conversion flow: load once, export once, then per target copy, post-process,
verify against the source framework, and write the artifact only if it all passed."""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path
from typing import Any, Iterable

from onnxport.artifact.manifest import build_manifest
from onnxport.artifact.modelinfo import describe_model
from onnxport.artifact.names import safe_name
from onnxport.artifact.committing import OutputLock, Staging, check_output_dir
from onnxport.artifact.writing import write_json
from onnxport.conversion import (ConversionRequest, ConversionResult,
                                 TargetArtifact, Verification)
from onnxport.errors import (BadInput, ExportFailed, OnnxportError, VerificationFailed,
                             environment_problem)
from onnxport.flow.budget import check_budget, measured_elsewhere_note
from onnxport.flow.candidates import TargetRun, run_target
from onnxport.flow.choosing import candidates_of, choose
from onnxport.flow.config import configured
from onnxport.flow.inputs import with_example_ranges
from onnxport.flow.sources import pick_backend, resolve_source
from onnxport.flow.stages import stage_events
from onnxport.flow.targets import ResolvedTarget, resolve_targets
from onnxport.flow.verification import Reference
from onnxport.host import PluginHost
from onnxport.records import (Backend, ExportRequest, ExportResult, LoadedModel,
                              LoadRequest, RunOptions, Source, Target)
from onnxport.report import build_report, write_reports
from onnxport.tolerance import budget_for


def run_conversion(request: ConversionRequest, host: PluginHost,
                   observers: Iterable[Any] = ()) -> ConversionResult:
    """Convert, verify and write one request. `host` is not changed: the conversion
    works on a view of it with the request's enables and config, and `observers`
    (objects with stage hooks, such as a progress display) see its stages."""
    try:
        with OutputLock(request.output):
            return _run_locked(request, host, observers)
    except OSError as exc:  # raised by onnxport itself: staging, copying, committing
        problem = environment_problem(exc)
        if problem is None:
            raise
        raise problem from exc


def _run_locked(request: ConversionRequest, host: PluginHost,
                observers: Iterable[Any]) -> ConversionResult:
    started = time.perf_counter()
    output = Path(request.output)
    # before running any user code
    check_output_dir(output, request.overwrite, protected=inputs_of(request))
    host = configured(host.view(enable=request.enable, observers=observers),
                      request.config)
    timings: dict[str, float] = {}
    with stage_events(host, "load", None, timings):
        source = resolve_source(request.source)
        backend = pick_backend(host, source, request.backend)
        resolved = resolve_targets(host, request.targets, request.pass_options)
        routes = _export_routes(backend, [r.target for r in resolved], request)
        loaded = _load(backend, request, source)
    request = dataclasses.replace(request, verification=with_example_ranges(
        request.verification, loaded.example_inputs, loaded.dynamic_axes))
    name = request.name or default_name(source, loaded)
    staging = Staging(output)
    try:
        artifacts, exported = _export_and_verify(
            host, request, backend, loaded, resolved, staging.path, name, routes, timings)
        timings["total"] = time.perf_counter() - started
        passed = all(a.passed for a in artifacts)
        report = build_report(request, name, backend, loaded, exported, artifacts, timings,
                              passed)
        write_reports(staging.path, report)
    except BaseException:
        staging.discard()
        raise
    result = ConversionResult(name=name, passed=passed, output=None, loaded=loaded,
                              exported=exported, artifacts=artifacts, report=report,
                              timings=timings)
    if passed:
        result.output = staging.commit()
        _relocate(result, staging.path, result.output)
        return result
    kept = staging.discard(keep_as=_failed_dir(output) if request.keep_failed else None)
    if kept is not None:
        result.output = kept
        _relocate(result, staging.path, kept)
    failing = next(a for a in artifacts if not a.passed)
    raise VerificationFailed(
        f"verification failed for target {failing.target.name}: {failing.problem}",
        (f"the candidate is kept in {kept}" if kept else
         f"nothing was written to {output}; pass --keep-failed to keep the candidate"),
        result=result)


def _export_and_verify(host: PluginHost, request: ConversionRequest, backend: Backend,
                       loaded: LoadedModel, resolved: list[ResolvedTarget], root: Path,
                       name: str, routes: list[tuple[str | None, int | None]],
                       timings: dict[str, float]
                       ) -> tuple[list[TargetArtifact], ExportResult]:
    """Export, then build every target's candidates against the source's outputs
    (computed once), choose what ships, and write each target's directory.

    With several routes (the backend's exporters, in its order), a route whose export
    fails, or whose export fails verification, gives way to the next; with
    `--optimize thorough` every route that exports is a source of candidates. The
    report says which route shipped and why the others did not."""
    work = root / ".work"
    work.mkdir()
    source_session = host.get("runner", backend.runner).open(
        loaded, RunOptions(threads=request.verification.threads))
    attempts: list[dict[str, str]] = []
    errors: list[ExportFailed] = []  # the exporters' own errors, for --debug
    runs: list[list[TargetRun]] = []  # per route that exported: one run per target
    try:
        reference = Reference(source_session, loaded.input_names, loaded.example_inputs,
                              request.dynamic_batch, request.verification)
        for index, (exporter, opset) in enumerate(routes):
            last = index == len(routes) - 1
            route_dir = work / (exporter or "default")
            route_dir.mkdir()
            try:
                with stage_events(host, "export", None, timings):
                    exported = _export(backend, loaded, ExportRequest(
                        output_path=route_dir / f"{safe_name(name)}.onnx", opset=opset,
                        exporter=exporter, dynamic_batch=request.dynamic_batch,
                        external_data=request.external_data,
                        options=request.backend_options,
                        dynamic_axes=request.dynamic_axes))
            except ExportFailed as exc:
                attempts.append({"exporter": exporter, "failed": "export",
                                 "reason": exc.message, "hint": exc.hint or ""})
                errors.append(exc)
                if last and not runs:
                    raise _every_route_failed(attempts) from errors[0]
                continue
            route_runs = [run_target(host, choice, exported, loaded, reference, request,
                                     route_dir, timings) for choice in resolved]
            failing = [r for r in route_runs if not r.export_passed]
            if failing:
                attempts.append({"exporter": exporter, "failed": "verification",
                                 "reason": failing[0].stages[0].verification.problem})
            else:
                runs.append(route_runs)
            if runs and request.optimize == "fast":
                break
            if last and not runs:
                if any(a["failed"] == "export" for a in attempts):
                    # no route made a model that verifies, and one could not export:
                    # that route's error says most (the others traced something else)
                    raise _every_route_failed(attempts) from errors[0]
                attempts.pop()  # the last route's verification failure is the report
                runs.append(route_runs)
        artifacts = [_ship(host, [route[i] for route in runs], root, loaded, reference,
                           request, attempts) for i in range(len(resolved))]
    finally:
        source_session.close()
    shutil.rmtree(work, ignore_errors=True)
    return artifacts, artifacts[0].exported


def _ship(host: PluginHost, runs: list[TargetRun], root: Path, loaded: LoadedModel,
          reference: Reference, request: ConversionRequest,
          attempts: list[dict[str, str]]) -> TargetArtifact:
    """Choose among one target's candidates (from every route run) and write the
    target's directory with the model that ships and its manifest."""
    candidates = [c for run in runs for c in candidates_of(run)]
    run = runs[0]
    winner = None
    if candidates and run.failed is None:
        winner = choose(run, candidates, reference, request.verification.threads)
        run = next(r for r in runs if any(winner.stages is chain for chain in r.chains))
    target, exported = run.target, run.exported
    stages, warnings = list(run.stages), list(run.warnings)
    shipped = winner.stages if winner is not None else run.failed_on
    losers = {id(s): c for c in candidates if c is not winner for s in c.stages[1:]}
    # An alternative that lost is a decision, said where it is read; the figures it was
    # decided on (timed side by side, one thread) are in the candidates table, apart
    # from the stage's own verification latency.
    for stage in stages:
        if stage.status == "ok" and id(stage) in losers and \
                all(stage is not s for s in shipped):
            loser = losers[id(stage)]
            stage.status, stage.reason = "rejected", f"lost: {loser.cause} (see candidates)"
            stage.settings = {**stage.settings, "lost": loser.reason}
    if winner is not None and len(candidates) > 1 and len(shipped) > 1:
        shipped[-1].reason = shipped[-1].reason or \
            f"shipped: {winner.cause} of {len(candidates)} candidates (see candidates)"
        shipped[-1].settings = {**shipped[-1].settings, "chosen": winner.reason}
    if attempts:
        warnings[:0] = [f"export: the {a['exporter']} exporter "
                        f"{'failed' if a['failed'] == 'export' else 'made a model that failed verification'}"
                        f" ({a['reason']}); used {exported.exporter} instead"
                        for a in attempts]
        exported.details["routes"] = [*attempts, {"exporter": exported.exporter,
                                                  "shipped": "yes"}]
    budget = request.latency_budget or target.latency_budget
    export = stages[0].verification
    timed = sum(bool(c.latency_ms) for c in candidates) > 1  # a choice by timing
    note = measured_elsewhere_note(target, decided=timed,
                                   ran=export.providers if export is not None else ())
    if note and (budget or timed):
        warnings.append(note)
    if run.export_passed:
        warnings += reference.proves_little(loaded.output_names, lambda output: budget_for(
            output, target=target.tolerance, settings=request.verification))
    nonfinite = {o.name: o.nonfinite for s in stages if s.verification
                 for b in s.verification.batches for o in b.outputs if o.nonfinite}
    warnings += [f"output {name}: the source's values include {count} NaN/inf, accepted "
                 "in the same places because --allow-nonfinite was given"
                 for name, count in nonfinite.items()]
    # the stages stay in run order: the losers were marked rejected above, so the last
    # stage that went on is the shipped model's (TargetArtifact.final)
    current = shipped[-1].path if shipped else run.stages[0].path
    directory = root / target.name
    directory.mkdir()
    model_path = directory / exported.path.name
    for file in [current, *_side_files(current)]:
        shutil.copy2(file, directory / (model_path.name if file == current else file.name))
    for stage in stages:  # working copies are deleted; the shipped model is in directory
        stage.path = model_path if stage.path == current else None
    artifact = TargetArtifact(target, directory, model_path, stages, {}, warnings,
                              run.runner.name, run.choice.requested,
                              candidates=candidates if len(candidates) > 1 else [],
                              exported=exported, budget_required=request.require_budget)
    if budget and run.failed is None and shipped:
        artifact.budget = _check_budget(run, model_path, reference, request, budget)
        if not artifact.budget["met"]:
            b = artifact.budget
            warnings.append(f"p99 {b['p99_ms']:.3g} ms at batch {b['batch']} is over the "
                            f"latency budget of {b['budget_ms']:g} ms (measured on "
                            f"{b['machine']}, {b['threads']} thread(s))")
    artifact.manifest = build_manifest(request, artifact, loaded, exported)
    write_json(directory / "manifest.json", artifact.manifest)
    return artifact


def _check_budget(run: TargetRun, model: Path, reference: Reference,
                  request: ConversionRequest, budget: tuple[float, int]) -> dict[str, Any]:
    """The shipped model's p99 at the budget's batch, on the target's runner."""
    from onnxport.flow.inputs import random_inputs

    budget_ms, batch = budget
    settings = request.verification
    dynamic = reference.inputs_info and reference.inputs_info[0].shape[:1] == ["batch"]
    feeds = (random_inputs(reference.inputs_info, batch, settings.seed,
                           reference.example_shapes, settings.input_ranges) if dynamic
             else reference.inputs(reference.labels[0]))
    options = RunOptions(providers=run.run_options.providers,
                         provider_options=run.run_options.provider_options,
                         threads=settings.threads or 1,
                         graph_optimization_level=run.run_options.graph_optimization_level)
    return check_budget(run.runner, model, options, feeds, budget_ms, batch)


def _every_route_failed(attempts: list[dict[str, str]]) -> ExportFailed:
    """The first route's error (the backend's default, usually the most telling), with
    what the others said; a route that failed verification is named as such."""
    first = next(a for a in attempts if a["failed"] == "export")
    others = [f"the {a['exporter']} exporter "
              + ("failed too" if a["failed"] == "export" else "made a model that failed "
                 "verification") + f": {a['reason']}" for a in attempts if a is not first]
    return ExportFailed(first["reason"] + (f" ({'; '.join(others)})" if others else ""),
                        first["hint"] or None)


AUTO = "auto"  # --exporter auto: every route of the backend, in its order


def inputs_of(request: ConversionRequest) -> list[Path]:
    """The files a conversion reads, which its output must not replace or contain."""
    source = request.source
    paths = [request.source.weights, request.verification.data, request.config]
    if source.kind == "path":
        paths.append(Path(source.value))
    elif source.kind == "factory":
        module = source.origin.rpartition(":")[0]
        if module.endswith(".py") or "/" in module:
            paths.append(Path(module))
    return [Path(p) for p in paths if p is not None]


def _export_routes(backend: Backend, targets: list[Target], request: ConversionRequest
                   ) -> list[tuple[str | None, int | None]]:
    """The (exporter, opset) routes to try in order: the one the user named, else every
    exporter of the backend that can produce the opset asked for (`--exporter auto`)."""
    if request.exporter not in (None, AUTO):
        return [_check_export_choice(backend, targets, request.exporter, request.opset)]
    routes, first_error = [], None
    for exporter in backend.exporters or (None,):
        try:
            routes.append(_check_export_choice(backend, targets, exporter, request.opset))
        except BadInput as exc:
            first_error = first_error or exc
    if not routes:
        raise first_error
    return routes


def _check_export_choice(backend: Backend, targets: list[Target], exporter: str | None,
                         opset: int | None) -> tuple[str | None, int | None]:
    """Refuse, before exporting, an exporter or opset that cannot be produced."""
    if exporter is not None and backend.exporters and exporter not in backend.exporters:
        raise BadInput(f"backend '{backend.name}' has no exporter '{exporter}'",
                       f"choose one of: {', '.join(backend.exporters)}")
    chosen = exporter or (backend.exporters[0] if backend.exporters else None)
    low, high = backend.opsets.get(chosen or "", (None, None))
    for target in targets:
        if target.opset_min is not None:
            low = max(low or 0, target.opset_min)
        if target.opset_max is not None:
            high = min(high, target.opset_max) if high else target.opset_max
    if opset is not None and ((low and opset < low) or (high and opset > high)):
        raise BadInput(
            f"opset {opset} cannot be produced by the {backend.name} backend's "
            f"{chosen + ' exporter' if chosen else 'exporter'}" + (f" for target(s) {', '.join(t.name for t in targets)}"
                                         if any(t.opset_min or t.opset_max for t in targets)
                                         else ""),
            f"choose an opset from {low} to {high}" +
            (" (or --exporter torchscript for older opsets)"
             if chosen == "dynamo" and low and opset < low else ""))
    if low and high and low > high:
        raise BadInput(f"the targets' opset bounds ({low} to {high}) leave no opset the "
                       f"{chosen} exporter can produce", "convert those targets separately")
    if opset is None and any(t.opset_max is not None for t in targets):
        opset = high  # the exporter's own default may be above the target's bound
    return exporter, opset


def _load(backend: Backend, request: ConversionRequest, source: Source) -> LoadedModel:
    try:
        return backend.load(LoadRequest(
            source=source, inputs=request.inputs, input_names=request.input_names,
            output_names=request.output_names or source.output_names,
            dynamic_batch=request.dynamic_batch, trust_code=request.trust_code,
            options=request.backend_options, dynamic_axes=request.dynamic_axes))
    except Exception as exc:  # a plugin's own error too: a full disk is the machine's
        problem = environment_problem(exc)
        if problem is not None:
            raise problem from exc
        if isinstance(exc, OnnxportError):
            raise
        raise BadInput(f"the {backend.name} backend could not load "
                       f"{request.source.origin}: {type(exc).__name__}: {exc}") from exc


def _export(backend: Backend, loaded: LoadedModel, export: ExportRequest) -> ExportResult:
    try:
        result = backend.export(loaded, export)
    except Exception as exc:  # a plugin's own error too: a full disk is the machine's
        problem = environment_problem(exc)  # a full disk is not the exporter's failure
        if problem is not None:
            raise problem from exc
        if isinstance(exc, OnnxportError):
            raise
        first = (str(exc).strip().splitlines() or [""])[0]
        raise ExportFailed(f"the {backend.name} backend failed to export: "
                           f"{type(exc).__name__}: {first}",
                           "run with --debug for the full error") from exc
    if not Path(result.path).is_file() or Path(result.path).stat().st_size == 0:
        raise ExportFailed(f"the {backend.name} backend reported success but wrote no "
                           f"model at {result.path}")
    return result


def _side_files(model: Path) -> list[Path]:
    """External data files a model refers to (they travel with it)."""
    return [model.parent / name for name in describe_model(model).external_data]


# A factory with one of these names is its module's only one: the module names it.
GENERIC_FACTORIES = ("build", "main", "model", "create", "make", "factory", "get_model",
                     "build_model", "create_model", "make_model", "load", "load_model")


def default_name(source: Source, loaded: LoadedModel) -> str:
    """The artifact's name when the user gives none: a factory's function name (its
    module's name for a generic one like `build`), a file's stem, or the model's type."""
    origin = source.origin
    if source.kind == "path":
        return safe_name(Path(origin).stem)
    module, sep, function = origin.rpartition(":")
    if sep and module:
        if function not in GENERIC_FACTORIES:  # several factories in one module
            return safe_name(function)
        return safe_name(Path(module).stem if module.endswith(".py") else
                         module.rsplit(".", 1)[-1])
    return safe_name(type(loaded.model).__name__.lower())


def _max_abs_text(verification: Verification) -> str:
    worst = verification.max_abs
    return "" if worst is None else f"max abs error {worst:.2e}"


def _failed_dir(output: Path) -> Path:
    return output.with_name(output.name + ".failed")


def _relocate(result: ConversionResult, old_root: Path, new_root: Path) -> None:
    """Point the result's paths at where the artifact ended up after the move."""
    for artifact in result.artifacts:
        artifact.directory = new_root / artifact.directory.relative_to(old_root)
        artifact.model_path = new_root / artifact.model_path.relative_to(old_root)
        for stage in artifact.stages:
            if stage.path is not None and stage.path.is_relative_to(old_root):
                stage.path = new_root / stage.path.relative_to(old_root)
