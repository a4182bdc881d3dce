"""`check_backend`: a backend plugin through load, export, the verification stage and
bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from onnxport.errors import OnnxportError
from onnxport.records import Backend, ExportRequest, LoadRequest, Source
from onnxport.testing.hosts import (DEFAULT_SELECTION, as_plugin, fresh_host, name_for_plugin,
                                    work_dir_for)
from onnxport.testing.registration import onnx_problem, registration_checks
from onnxport.testing.reports import ConformanceReport


def _source(sample: Any) -> Source:
    from onnxport.flow.sources import source_from_object, source_from_text

    if isinstance(sample, Source):
        return sample
    if isinstance(sample, (str, Path)):
        return source_from_text(str(sample))
    return source_from_object(sample, origin=f"conformance sample {type(sample).__name__}")


def _claims(backend: Backend, source: Source, report: ConformanceReport, what: str
            ) -> bool | None:
    try:
        return bool(backend.can_load(source))
    except Exception as exc:
        report.problem("can-load", f"can_load raised {type(exc).__name__} on {what}: "
                       f"{exc}; it must answer True or False without raising")
        return None


def _try_load(backend: Backend, request: LoadRequest, report: ConformanceReport,
              what: str, rule: str):
    """Load; a failure is reported under `rule`, a bare exception also as unnamed."""
    try:
        return backend.load(request), None
    except OnnxportError as exc:
        report.problem(rule, f"backend '{backend.name}' claims {what} but cannot load it: "
                       f"{type(exc).__name__}: {exc.one_line()}")
        return None, exc
    except Exception as exc:
        report.problem(rule, f"backend '{backend.name}' claims {what} but cannot load it: "
                       f"{type(exc).__name__}: {exc}")
        report.problem("unnamed-error", f"backend '{backend.name}' load raised a bare "
                       f"{type(exc).__name__} ({exc}); raise onnxport.BadInput (or "
                       "ExportFailed / MissingDependency) with a hint instead")
        return None, exc


def check_backend(plugin: Any, sample: Any, *, backend: str | None = None,
                  name: str | None = None, selection: str | None = DEFAULT_SELECTION,
                  bad_inputs: list[Any] | None = None, targets: tuple[str, ...] = ("cpu",),
                  work_dir: Path | None = None, convert: bool = True,
                  **convert_options: Any) -> ConformanceReport:
    """Run a backend plugin through the contract with `sample` (what `onnxport.convert`
    accepts: a model object, a `(model, example_inputs[, output_names])` tuple, a path
    or a `module:function` factory, or a `Source`).

    Checks registration, that the backend (and its runner) are enabled or say why not,
    `can_load` (true for the sample, false for a .txt file; a claim is tested by loading
    it), a direct load + export whose file passes `onnx.checker`, a conversion through
    `onnxport.convert` with the verification stage, and bad input (`bad_inputs`, plus a
    load request with too many input names) raising an OnnxportError subclass.
    """
    plugin = as_plugin(plugin)
    plugin_name = name_for_plugin(plugin, name)
    report = ConformanceReport(plugin_name)
    records = registration_checks(plugin, plugin_name, report)
    backends = [r for k, r in records if k == "backend" and isinstance(r, Backend)]
    if backend is None and backends:
        backend = backends[0].name
    if backend is None or backend not in {b.name for b in backends}:
        report.problem("registration", f"the plugin registers no backend named "
                       f"{backend!r} (it registers: "
                       f"{', '.join(b.name for b in backends) or 'none'})")
        return report
    host = fresh_host(selection)
    try:
        host.register(plugin, plugin_name)
        entry = host.registrations("backend")[backend]
    except OnnxportError as exc:
        report.problem("registration", exc.one_line())
        return report
    if not entry.enabled:
        if entry.missing:
            report.notes.append(f"backend '{backend}' is disabled here ({entry.reason}); "
                                "the load and export checks were skipped")
            return report
        host = host.view(enable=[backend])
        report.notes.append(f"backend '{backend}' is off by default ({entry.reason}); "
                            "checked with it enabled")
    record: Backend = host.registrations("backend")[backend].record
    runners = host.registrations("runner")
    if record.runner not in runners:
        report.problem("runner", f"backend '{backend}' names runner '{record.runner}', "
                       "which no loaded plugin registers")
    else:
        report.passed.append("runner")
    with work_dir_for(work_dir) as work:
        source = _source(sample)
        _check_backend_io(record, source, work, bad_inputs or [], report)
        if convert and "invalid-model" not in report.rules() and \
                "load" not in report.rules() and "export" not in report.rules():
            from onnxport.api import convert as run_convert

            given = dict(convert_options)
            if source.kind == "path":
                args = (str(source.value),)
            else:
                args = (source.value, source.example_inputs)
                if source.output_names and "output_names" not in given:
                    given["output_names"] = source.output_names
            try:
                report.result = run_convert(*args, output=work / "converted", host=host,
                                            backend=backend, targets=targets,
                                            overwrite=True, **given)
                report.passed.append("verification")
            except OnnxportError as exc:
                report.problem("verification", f"onnxport convert with backend "
                               f"'{backend}' failed: {type(exc).__name__}: "
                               f"{exc.one_line()}")
    return report


def _check_backend_io(record: Backend, source: Source, work: Path, bad_inputs: list[Any],
                      report: ConformanceReport) -> None:
    before = set(report.rules())
    claims = _claims(record, source, report, f"the sample {source.origin}")
    if claims is False:
        report.problem("can-load", f"can_load is False for the sample {source.origin}")
    foreign = work / "not-a-model.txt"
    foreign.write_text("this is a text file, not a model\n")
    foreign_source = Source(kind="path", value=foreign, origin=str(foreign))
    if _claims(record, foreign_source, report, "a .txt file"):
        loaded, _ = _try_load(record, LoadRequest(source=foreign_source), report,
                              f"the text file {foreign.name}", "claims-unloadable")
        if loaded is not None:
            report.problem("can-load", f"can_load is True for the text file "
                           f"{foreign.name}; claim only what this backend converts")
    if "can-load" not in report.rules():
        report.passed.append("can-load")
    # load and export the sample directly, then check the file
    if claims:
        request = LoadRequest(source=source, output_names=source.output_names)
        loaded, _ = _try_load(record, request, report, f"the sample {source.origin}",
                              "claims-unloadable")
        if loaded is None:
            report.problem("load", f"the sample {source.origin} did not load")
        else:
            report.passed.append("load")
            _check_export(record, loaded, work, report)
    # bad input
    bad = [_source(b) for b in bad_inputs]
    checked = 0
    for bad_source in bad:
        if not _claims(record, bad_source, report, f"bad input {bad_source.origin}"):
            continue
        checked += 1
        _expect_error(record, LoadRequest(source=bad_source), report,
                      f"bad input {bad_source.origin}")
    if claims:
        checked += 1
        names = tuple(f"unexpected_{i}" for i in range(64))
        _expect_error(record, LoadRequest(source=source, input_names=names), report,
                      "the sample with 64 input names",
                      fine_if=lambda loaded: list(loaded.input_names) == list(names))
    if checked and not ({"bad-input", "unnamed-error"} & (report.rules() - before)):
        report.passed.append("bad-input")


def _expect_error(record: Backend, request: LoadRequest, report: ConformanceReport,
                  what: str, fine_if: Any = None) -> None:
    """`fine_if(loaded)`: the backend may accept the request if it really honours it."""
    try:
        loaded = record.load(request)
    except OnnxportError:
        return
    except Exception as exc:
        report.problem("unnamed-error", f"backend '{record.name}' raised a bare "
                       f"{type(exc).__name__} for {what} ({exc}); the host can only wrap "
                       "it as a generic failure: raise onnxport.BadInput with a hint")
        return
    if fine_if is not None and fine_if(loaded):
        return
    report.problem("bad-input", f"backend '{record.name}' accepted {what} without an "
                   "error; raise onnxport.BadInput")


def _check_export(record: Backend, loaded: Any, work: Path,
                  report: ConformanceReport) -> None:
    path = work / "direct" / "model.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        result = record.export(loaded, ExportRequest(output_path=path))
    except OnnxportError as exc:
        report.problem("export", f"export of the sample failed: {exc.one_line()}")
        return
    except Exception as exc:
        report.problem("export", f"export of the sample failed: {type(exc).__name__}: "
                       f"{exc}")
        report.problem("unnamed-error", f"backend '{record.name}' export raised a bare "
                       f"{type(exc).__name__}; raise onnxport.ExportFailed with a hint")
        return
    written = Path(getattr(result, "path", path))
    if not written.is_file() or written.stat().st_size == 0:
        report.problem("export", f"export reported success but wrote no model at "
                       f"{written}")
        return
    report.passed.append("export")
    if getattr(result, "format", "onnx") != "onnx":
        report.notes.append(f"export wrote {result.format}, not ONNX: onnx.checker skipped")
        return
    problem = onnx_problem(written)
    if problem:
        report.problem("invalid-model", f"backend '{record.name}' exported an invalid "
                       f"ONNX model: {problem}")
    else:
        report.passed.append("invalid-model")
