"""The conversion flow: load once, export once, then per target copy, post-process,
verify against the source framework, and write the artifact only if it all passed."""

from __future__ import annotations

import dataclasses
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

from onnxport.artifact.manifest import build_manifest
from onnxport.artifact.modelinfo import describe_model
from onnxport.artifact.names import safe_name
from onnxport.artifact.committing import OutputLock, Staging, check_output_dir
from onnxport.artifact.writing import write_json
from onnxport.conversion import (ConversionRequest, ConversionResult, StageResult,
                                 TargetArtifact, Verification)
from onnxport.errors import (BadInput, Crashed, ExportFailed, OnnxportError,
                             VerificationFailed, environment_problem)
from onnxport.flow.config import configured
from onnxport.flow.inputs import with_example_ranges
from onnxport.flow.sources import pick_backend, resolve_source
from onnxport.flow.targets import ResolvedTarget, fallback_note, resolve_targets
from onnxport.flow.verification import Reference, verify_candidate
from onnxport.host import PluginHost
from onnxport.records import (Backend, ExportRequest, ExportResult, LoadedModel,
                              LoadRequest, Pass, PassContext, RunOptions, Source,
                              StageEvent, Target, Tolerance)
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
    with _stage(host, "load", None, timings):
        source = resolve_source(request.source)
        backend = pick_backend(host, source, request.backend)
        resolved = resolve_targets(host, request.targets, request.pass_options)
        routes = _export_routes(backend, [r.target for r in resolved], request)
        loaded = _load(backend, request, source)
    request = dataclasses.replace(request, verification=with_example_ranges(
        request.verification, loaded.example_inputs))
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
        f"verification failed for target {failing.target.name}: "
        f"{failing.verification.problem}",
        (f"the candidate is kept in {kept}" if kept else
         f"nothing was written to {output}; pass --keep-failed to keep the candidate"),
        result=result)


def _export_and_verify(host: PluginHost, request: ConversionRequest, backend: Backend,
                       loaded: LoadedModel, resolved: list[ResolvedTarget], root: Path,
                       name: str, routes: list[tuple[str | None, int | None]],
                       timings: dict[str, float]
                       ) -> tuple[list[TargetArtifact], ExportResult]:
    """Export once into `root`'s work directory, then build every target against the
    source's outputs, computed once. With several routes (the backend's exporters, in
    its order), a route whose export fails, or whose export fails verification, gives
    way to the next; the report says which route shipped and why the others did not."""
    work = root / ".work"
    work.mkdir()
    source_session = host.get("runner", backend.runner).open(
        loaded, RunOptions(threads=request.verification.threads))
    attempts: list[dict[str, str]] = []
    errors: list[ExportFailed] = []  # the exporters' own errors, for --debug
    try:
        reference = Reference(source_session, loaded.input_names, loaded.example_inputs,
                              request.dynamic_batch, request.verification)
        for index, (exporter, opset) in enumerate(routes):
            last = index == len(routes) - 1
            route_dir = work / (exporter or "default")
            route_dir.mkdir()
            try:
                with _stage(host, "export", None, timings):
                    exported = _export(backend, loaded, ExportRequest(
                        output_path=route_dir / f"{safe_name(name)}.onnx", opset=opset,
                        exporter=exporter,
                        dynamic_batch=request.dynamic_batch,
                        external_data=request.external_data,
                        options=request.backend_options))
            except ExportFailed as exc:
                attempts.append({"exporter": exporter, "failed": "export",
                                 "reason": exc.message, "hint": exc.hint or ""})
                errors.append(exc)
                if last:
                    raise _every_route_failed(attempts) from errors[0]
                continue
            artifacts = [_build_target(host, choice, root, exported, loaded, reference,
                                       request, timings)
                         for choice in resolved]
            failing = [a for a in artifacts if a.stages[0].status != "ok"]
            if not failing:
                break
            attempts.append({"exporter": exporter, "failed": "verification",
                             "reason": failing[0].stages[0].verification.problem})
            if last and any(a["failed"] == "export" for a in attempts):
                # no route made a model that verifies, and one could not export at all:
                # that route's error says most (the others traced something else)
                raise _every_route_failed(attempts) from errors[0]
            if last:
                attempts.pop()  # the verification failure is reported as such
                break
            for artifact in artifacts:
                shutil.rmtree(artifact.directory, ignore_errors=True)
    finally:
        source_session.close()
    shutil.rmtree(work, ignore_errors=True)
    if attempts:
        exported.details["routes"] = [*attempts, {"exporter": exported.exporter,
                                                  "shipped": "yes"}]
        for artifact in artifacts:
            artifact.warnings[:0] = [f"export: the {a['exporter']} exporter "
                                     f"{'failed' if a['failed'] == 'export' else 'made a model that failed verification'}"
                                     f" ({a['reason']}); used {exported.exporter} instead"
                                     for a in attempts]
            artifact.manifest["warnings"] = artifact.warnings
            artifact.manifest["source"]["routes"] = exported.details["routes"]
            write_json(artifact.directory / "manifest.json", artifact.manifest)
    return artifacts, exported


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
            options=request.backend_options))
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


def _build_target(host: PluginHost, choice: ResolvedTarget, root: Path,
                  exported: ExportResult, loaded: LoadedModel, reference: Reference,
                  request: ConversionRequest, timings: dict[str, float]) -> TargetArtifact:
    """Verify the export for this target, run its passes (each verified against the
    source), and put the last model that passed in the target's directory."""
    target = choice.target
    runner = host.get("runner", exported.runner or target.runner)
    run_options = RunOptions(providers=target.providers,
                             provider_options=target.provider_options,
                             threads=request.verification.threads,
                             graph_optimization_level=target.graph_optimization_level)

    def verified(stage: str, path: Path, settings: dict[str, Any],
                 budget: Tolerance | None = None) -> StageResult:
        with _stage(host, f"verify {stage}" if stage != "export" else "verify",
                    target.name, timings) as note:
            verification = verify_candidate(
                path, reference, runner, run_options, loaded.input_names,
                loaded.output_names, request.dynamic_batch,
                lambda output: budget_for(output, target=target.tolerance,
                                          settings=request.verification,
                                          stage_budget=budget))
            note["status"] = "ok" if verification.passed else "failed"
            note["detail"] = verification.problem or _max_abs_text(verification)
        return StageResult(stage, "ok" if verification.passed else "failed", path,
                           describe_model(path), verification, settings)

    stages = [verified("export", exported.path,
                       {"exporter": exported.exporter, "opset": exported.opset})]
    warnings: list[str] = []
    if choice.reason:
        warnings.append(f"{choice.requested} picked {target.name}: {choice.reason}")
    fallback = (fallback_note(target, stages[0].verification.providers)
                if exported.format == "onnx" else "")
    if fallback:
        warnings.append(fallback)
    current = exported.path
    work = root / ".work" / target.name
    if exported.format != "onnx" and target.passes:
        warnings.append(f"passes {', '.join(target.passes)} were not run: they apply to "
                        f"ONNX models and this one is {exported.format}")
    runs_passes = stages[0].status == "ok" and exported.format == "onnx"
    for pass_name in target.passes if runs_passes else ():
        entry = host.registrations("pass").get(pass_name)
        if entry is None:
            stages.append(StageResult(pass_name, "skipped", reason="no plugin provides it"))
            warnings.append(f"{pass_name} did not run: no installed plugin provides it")
            continue
        if not entry.enabled:
            stages.append(StageResult(pass_name, "skipped", reason=entry.reason))
            warnings.append(f"{pass_name} did not run: {entry.reason}")
            continue
        stage = _run_pass(host, entry.record, target, current,
                          work / pass_name / exported.path.name, timings, verified)
        stages.append(stage)
        warnings += [f"{pass_name}: {note}" for note in stage.warnings]
        if stage.status == "ok":
            current = stage.path
        elif stage.status == "rejected":
            warnings.append(f"{pass_name}: {stage.reason}; kept the previous model")
        elif stage.status == "failed":
            break
    if stages[0].status == "ok":  # a pass that proves little is said where it is read
        warnings += reference.proves_little(loaded.output_names, lambda output: budget_for(
            output, target=target.tolerance, settings=request.verification))
    nonfinite = {o.name: o.nonfinite for s in stages if s.verification
                 for b in s.verification.batches for o in b.outputs if o.nonfinite}
    warnings += [f"output {name}: the source's values include {count} NaN/inf, accepted "
                 "in the same places because --allow-nonfinite was given"
                 for name, count in nonfinite.items()]
    directory = root / target.name
    directory.mkdir()
    model_path = directory / exported.path.name
    for file in [current, *_side_files(current)]:
        shutil.copy2(file, directory / (model_path.name if file == current else file.name))
    for stage in stages:  # working copies are deleted; the shipped model is in directory
        stage.path = model_path if stage.path == current else None
    artifact = TargetArtifact(target, directory, model_path, stages, {}, warnings,
                              runner.name, choice.requested)
    artifact.manifest = build_manifest(request, artifact, loaded, exported)
    write_json(directory / "manifest.json", artifact.manifest)
    return artifact


def _run_pass(host: PluginHost, pass_: Pass, target: Target, current: Path,
              output_path: Path, timings: dict[str, float], verified) -> StageResult:
    applies = pass_.applies(target)
    host.trace(f"pass {pass_.name} applies({target.name}) -> {applies}")
    if not applies:
        return StageResult(pass_.name, "skipped", reason=f"does not apply to {target.name}")
    output_path.parent.mkdir(parents=True, exist_ok=True)
    context = PassContext(input_path=current, output_path=output_path, target=target,
                          options=dict(target.options.get(pass_.name, {})),
                          work_dir=output_path.parent)
    try:
        with _stage(host, pass_.name, target.name, timings):
            outcome = pass_.run(context)
    except OnnxportError:
        raise
    except Exception as exc:
        reason = f"raised {type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
        if not pass_.optional:
            raise ExportFailed(f"pass '{pass_.name}' failed for target {target.name}: "
                               f"{reason}") from exc
        return StageResult(pass_.name, "rejected", reason=reason)
    if not outcome.applied:
        return StageResult(pass_.name, "skipped", settings=outcome.settings,
                           reason=outcome.reason or "nothing to do",
                           warnings=list(outcome.warnings))
    optional = pass_.optional if outcome.optional is None else outcome.optional
    stage = verified(pass_.name, Path(outcome.path or output_path), outcome.settings,
                     outcome.tolerance)
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


def _side_files(model: Path) -> list[Path]:
    """External data files a model refers to (they travel with it)."""
    return [model.parent / name for name in describe_model(model).external_data]


@contextmanager
def _stage(host: PluginHost, stage: str, target: str | None,
           timings: dict[str, float]) -> Iterator[dict[str, str]]:
    host.call("onnxport_stage_started", event=StageEvent(stage, target, "started"))
    note = {"status": "ok", "detail": ""}
    started = time.perf_counter()
    try:
        try:
            yield note
        except SystemExit as exc:  # never a success, whatever code it exits with
            raise Crashed(f"the model's code called sys.exit({exc.code!r}) in stage "
                          f"{stage}", "a model, its factory and its forward() must not "
                          "exit the process") from None
    except BaseException as exc:
        note["status"], note["detail"] = "failed", str(exc).splitlines()[0] if str(exc) else ""
        raise
    finally:
        seconds = time.perf_counter() - started
        key = stage if target is None else f"{stage}:{target}"
        timings[key] = timings.get(key, 0.0) + seconds
        host.call("onnxport_stage_finished", event=StageEvent(
            stage, target, note["status"], seconds, note["detail"]))


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
