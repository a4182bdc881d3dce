"""The conformance kit: run a plugin through onnxport's contract and list every rule it
breaks, each with a message that says what to fix.

    from onnxport.testing import check_backend, check_pass, check_plugin

    def test_my_backend_conforms(tmp_path):
        report = check_backend(my_plugin_module, (model, example_inputs), work_dir=tmp_path)
        assert report.ok, report          # str(report) lists every broken rule

The checks use a fresh `PluginHost` that holds only the built-in plugins the check needs
(`selection`, default "providers": the onnxruntime runner and the targets) plus the
plugin under test, so the result does not depend on what else is installed. Names are
still compared against every installed plugin, so a clash with a built-in is caught.

For isolated tests, `fresh_host()` builds such a host, and `onnxport_host` is a pytest
fixture you can import into your conftest.py::

    from onnxport.testing import onnxport_host  # noqa: F401  (a fixture)

    def test_something(onnxport_host):
        with onnxport_host.registered(MyPlugin(), "mine"):
            ...
"""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from onnxport.errors import OnnxportError, PluginError
from onnxport.host import _KINDS, _NAME, PluginHost, missing_requirement
from onnxport.records import (Backend, ExportRequest, LoadRequest, Pass, PassContext, PassOutcome,
                      Source, Target)

__all__ = ["ConformanceError", "ConformanceReport", "Problem", "check_backend",
           "check_pass", "check_plugin", "fresh_host", "onnxport_host"]

DEFAULT_SELECTION = "providers"


# --------------------------------------------------------------------------- reports


@dataclass
class Problem:
    """One broken rule: `rule` is a stable id (see RULES), `message` what to fix."""

    rule: str
    message: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.message}"


RULES = {
    "registration": "registration hooks call register() with onnxport records",
    "name": "names are lower-case [a-z0-9_.-]",
    "duplicate-name": "names are unique among the plugin's records and every installed "
                      "plugin's (built-ins included)",
    "disabled-reason": "a disabled record says why (disabled_reason)",
    "can-load": "can_load is true for the sample, false for a foreign source, never raises",
    "claims-unloadable": "a backend that claims a source can load it",
    "load": "the sample loads",
    "export": "the export writes a file",
    "invalid-model": "the exported (or transformed) model passes onnx.checker",
    "verification": "the model passes onnxport's verification stage",
    "bad-input": "bad input raises an onnxport.OnnxportError subclass",
    "unnamed-error": "errors are raised as onnxport errors, not as bare exceptions the "
                     "host has to wrap (and which then do not say what to fix)",
    "runner": "the runner a backend names exists",
    "pass-outcome": "a pass returns a PassOutcome and writes the file it names",
}


class ConformanceError(AssertionError):
    """Raised by `ConformanceReport.raise_for_problems()`; its text lists every problem."""


@dataclass(repr=False)  # `assert report.ok, report` shows the readable text
class ConformanceReport:
    """What a check found: `problems` (broken rules), `passed` (rules checked and met),
    `notes` (what was skipped and why)."""

    plugin: str
    problems: list[Problem] = field(default_factory=list)
    passed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    result: Any = None  # the ConversionResult of the end-to-end conversion, if any

    @property
    def ok(self) -> bool:
        return not self.problems

    def rules(self) -> set[str]:
        """The ids of the broken rules."""
        return {p.rule for p in self.problems}

    def problem(self, rule: str, message: str) -> None:
        self.problems.append(Problem(rule, message))

    def __str__(self) -> str:
        head = (f"plugin '{self.plugin}' conforms ({len(self.passed)} checks passed)"
                if self.ok else
                f"plugin '{self.plugin}' breaks {len(self.problems)} rule(s):")
        lines = [head, *(f"  - {p}" for p in self.problems),
                 *(f"  note: {n}" for n in self.notes)]
        return "\n".join(lines)

    __repr__ = __str__

    def raise_for_problems(self) -> "ConformanceReport":
        if self.problems:
            raise ConformanceError(str(self))
        return self


# --------------------------------------------------------------------------- hosts


def fresh_host(selection: str | None = DEFAULT_SELECTION) -> PluginHost:
    """A host isolated from installed third-party plugins: only the named built-in
    plugins (entry point names, comma-separated; "" for every built-in, None for none)."""
    if selection is None:
        return PluginHost(load_entry_points=False)
    return PluginHost(selection=selection)


try:  # a fixture for users' conftest.py; pytest is not a dependency of onnxport
    import pytest as _pytest
except ImportError:  # pragma: no cover
    onnxport_host = None
else:
    @_pytest.fixture
    def onnxport_host() -> Iterator[PluginHost]:
        """A fresh PluginHost with the built-in `providers` plugin only."""
        yield fresh_host()


def _as_plugin(plugin_or_record: Any) -> Any:
    """A plugin object for a bare Backend / Pass / Runner / Target record."""
    from onnxport.host import hookimpl

    record = plugin_or_record
    hook = next((h for h, (t, _) in _KINDS.items() if isinstance(record, t)), None)
    if hook is None:
        return plugin_or_record

    class _Single:
        pass

    def register_it(register):
        register(record)

    setattr(_Single, hook, staticmethod(hookimpl(register_it)))
    # pluggy looks the hook up by attribute name
    return _Single()


def _plugin_name(plugin: Any, name: str | None) -> str:
    if name:
        return name
    base = getattr(plugin, "__name__", None) or type(plugin).__name__
    return "under-test-" + base.rsplit(".", 1)[-1].lower()


@contextmanager
def _work(work_dir: Path | None) -> Iterator[Path]:
    if work_dir is not None:
        Path(work_dir).mkdir(parents=True, exist_ok=True)
        yield Path(work_dir)
        return
    with tempfile.TemporaryDirectory(prefix="onnxport-conformance-") as tmp:
        yield Path(tmp)


# --------------------------------------------------------------------------- registration


def _collect(plugin: Any, name: str, report: ConformanceReport) -> list[tuple[str, Any]]:
    """Call the plugin's registration hooks alone; check each record's type and name."""
    solo = PluginHost(load_entry_points=False)
    try:
        solo.register(plugin, name)
        solo._check_pending()
    except PluginError as exc:
        report.problem("registration", exc.one_line())
        return []
    records: list[tuple[str, Any]] = []
    for hook_name, (record_type, kind) in _KINDS.items():
        for impl in getattr(solo.pm.hook, hook_name).get_hookimpls():
            def register(record, _kind=kind, _type=record_type):
                records.append((_kind, record))
                if not isinstance(record, _type):
                    report.problem("registration", f"{hook_name} registered a "
                                   f"{type(record).__name__}; expected onnxport."
                                   f"{_type.__name__}")
            try:
                impl.function(register=register)
            except OnnxportError as exc:
                report.problem("registration", f"{hook_name} raised: {exc.one_line()}")
            except Exception as exc:
                report.problem("unnamed-error", f"{hook_name} raised a bare "
                               f"{type(exc).__name__}: {exc}")
    seen: dict[tuple[str, str], int] = {}
    for kind, record in records:
        rname = getattr(record, "name", None)
        if not isinstance(rname, str) or not _NAME.match(rname):
            report.problem("name", f"{kind} name {rname!r} is not lower-case "
                           "letters, digits, '-', '_' and '.'")
            continue
        seen[(kind, rname)] = seen.get((kind, rname), 0) + 1
        if seen[(kind, rname)] == 2:
            report.problem("duplicate-name", f"{kind} '{rname}' is registered twice by "
                           "this plugin")
        if not getattr(record, "enabled", True) and not \
                str(getattr(record, "disabled_reason", "")).strip():
            report.problem("disabled-reason", f"{kind} '{rname}' is registered with "
                           "enabled=False but no disabled_reason: say why it is off and "
                           "how to turn it on")
    return records


def _check_clashes(plugin: Any, records: list[tuple[str, Any]],
                   report: ConformanceReport) -> None:
    """Compare names with every installed plugin's (the plugin itself left out)."""
    try:
        others = PluginHost()
    except OnnxportError as exc:
        report.notes.append(f"installed plugins could not all be loaded ({exc.one_line()});"
                            " names compared with the built-ins only")
        others = PluginHost(selection="")
    for other_name, other in list(others.pm.list_name_plugin()):
        if other is plugin:
            others.unregister(other_name)
    for kind, record in records:
        rname = getattr(record, "name", None)
        try:
            existing = others.registrations(kind).get(rname)
        except OnnxportError as exc:
            report.notes.append(f"installed plugins' {kind}s: {exc.one_line()}")
            continue
        if existing is not None:
            report.problem("duplicate-name", f"{kind} '{rname}' is already registered by "
                           f"installed plugin '{existing.plugin}'; pick another name")


def _registration(plugin: Any, name: str, report: ConformanceReport,
                  ) -> list[tuple[str, Any]]:
    before = len(report.problems)
    records = _collect(plugin, name, report)
    _check_clashes(plugin, records, report)
    if len(report.problems) == before:
        report.passed += ["registration", "name", "duplicate-name", "disabled-reason"]
    for kind, record in records:
        requires = getattr(record, "requires", None)
        if requires is not None and missing_requirement(requires):
            report.notes.append(f"{kind} '{record.name}' is unavailable here: "
                                f"{missing_requirement(requires)}")
    return records


def check_plugin(plugin: Any, *, name: str | None = None) -> ConformanceReport:
    """The registration rules only: records, names, uniqueness (against every installed
    plugin too), disabled records' reasons, and hooks that exist."""
    plugin = _as_plugin(plugin)
    name = _plugin_name(plugin, name)
    report = ConformanceReport(name)
    _registration(plugin, name, report)
    return report


# --------------------------------------------------------------------------- backends


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
    plugin = _as_plugin(plugin)
    plugin_name = _plugin_name(plugin, name)
    report = ConformanceReport(plugin_name)
    records = _registration(plugin, plugin_name, report)
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
        host.enable(backend)
        report.notes.append(f"backend '{backend}' is off by default ({entry.reason}); "
                            "checked with it enabled")
    record: Backend = host.registrations("backend")[backend].record
    runners = host.registrations("runner")
    if record.runner not in runners:
        report.problem("runner", f"backend '{backend}' names runner '{record.runner}', "
                       "which no loaded plugin registers")
    else:
        report.passed.append("runner")
    with _work(work_dir) as work:
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
    problem = _onnx_problem(written)
    if problem:
        report.problem("invalid-model", f"backend '{record.name}' exported an invalid "
                       f"ONNX model: {problem}")
    else:
        report.passed.append("invalid-model")


def _onnx_problem(path: Path) -> str:
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:
        return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    return ""


# --------------------------------------------------------------------------- passes


def _tiny_model(path: Path) -> None:
    """y = relu(identity(x) @ W + b), float32, dynamic batch: something every pass can
    work on (a no-op node for simplifiers, a MatMul with constant weights for
    quantizers, float32 values for precision passes)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((16, 8)).astype(np.float32), "W")
    bias = numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "B")
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["x_copy"]),
         helper.make_node("MatMul", ["x_copy", "W"], ["h"]),
         helper.make_node("Add", ["h", "B"], ["z"]),
         helper.make_node("Relu", ["z"], ["y"])],
        "conformance",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])],
        [weight, bias])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _run_onnx(path: Path, feeds: dict) -> list:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def _within(reference, candidate, tolerance) -> str:
    import numpy as np

    for ref, got in zip(reference, candidate):
        ref = np.asarray(ref, dtype=np.float64)
        got = np.asarray(got, dtype=np.float64)
        if ref.shape != got.shape:
            return f"shape {got.shape} instead of {ref.shape}"
        if np.isfinite(tolerance.atol):
            bad = ~np.isclose(got, ref, atol=tolerance.atol, rtol=tolerance.rtol)
            if bad.any():
                return (f"max abs error {np.abs(got - ref).max():.3g} beyond atol "
                        f"{tolerance.atol} rtol {tolerance.rtol}")
        if tolerance.min_cosine is not None:
            denom = np.linalg.norm(ref) * np.linalg.norm(got)
            cosine = float(ref.ravel() @ got.ravel() / denom) if denom else 1.0
            if cosine < tolerance.min_cosine:
                return f"cosine {cosine:.4f} below {tolerance.min_cosine}"
    return ""


def check_pass(plugin: Any, *, pass_name: str | None = None, name: str | None = None,
               target: Target | None = None, model: Path | None = None,
               options: dict | None = None, work_dir: Path | None = None,
               ) -> ConformanceReport:
    """Run a pass plugin through the contract: registration, `applies(target)`, a run on
    a small float32 ONNX model (or `model`) whose output must be a valid ONNX model that
    matches the input model within the outcome's tolerance (else the target's), and a
    run on a corrupt file that must raise an OnnxportError or return applied=False.

    `target` defaults to a CPU target; give one the pass applies to (e.g. with
    CUDAExecutionProvider listed) to check a GPU-only pass: models run on the CPU here.
    """
    import numpy as np

    plugin = _as_plugin(plugin)
    plugin_name = _plugin_name(plugin, name)
    report = ConformanceReport(plugin_name)
    records = _registration(plugin, plugin_name, report)
    passes = [r for k, r in records if k == "pass" and isinstance(r, Pass)]
    if pass_name is None and passes:
        pass_name = passes[0].name
    record = next((p for p in passes if p.name == pass_name), None)
    if record is None:
        report.problem("registration", f"the plugin registers no pass named "
                       f"{pass_name!r} (it registers: "
                       f"{', '.join(p.name for p in passes) or 'none'})")
        return report
    missing = missing_requirement(record.requires)
    if missing:
        report.notes.append(f"pass '{pass_name}' is unavailable here ({missing}); "
                            "its run was not checked")
        return report
    target = target or Target(name="conformance", description="conformance kit target",
                              passes=(pass_name,))
    try:
        applies = record.applies(target)
    except Exception as exc:
        report.problem("registration", f"applies({target.name}) raised "
                       f"{type(exc).__name__}: {exc}")
        return report
    if not applies:
        report.notes.append(f"pass '{pass_name}' does not apply to target "
                            f"'{target.name}'; give check_pass a target it applies to")
        return report
    with _work(work_dir) as work:
        source = Path(model) if model else work / "input.onnx"
        if model is None:
            _tiny_model(source)
        context = PassContext(input_path=source, output_path=work / "output.onnx",
                              target=target, options=dict(options or {}),
                              work_dir=work / "pass-work")
        context.work_dir.mkdir(exist_ok=True)
        try:
            outcome = record.run(context)
        except OnnxportError as exc:
            report.problem("pass-outcome", f"pass '{pass_name}' failed on a valid "
                           f"model: {exc.one_line()}")
            outcome = None
        except Exception as exc:
            report.problem("unnamed-error", f"pass '{pass_name}' raised a bare "
                           f"{type(exc).__name__} on a valid model: {exc}")
            outcome = None
        if outcome is not None and not isinstance(outcome, PassOutcome):
            report.problem("pass-outcome", f"pass '{pass_name}' returned "
                           f"{type(outcome).__name__}, not a PassOutcome")
        elif outcome is not None and outcome.applied:
            written = Path(outcome.path or context.output_path)
            if not written.is_file():
                report.problem("pass-outcome", f"pass '{pass_name}' says applied but "
                               f"wrote no model at {written}")
            else:
                report.passed.append("pass-outcome")
                problem = _onnx_problem(written)
                if problem:
                    report.problem("invalid-model", f"pass '{pass_name}' wrote an "
                                   f"invalid ONNX model: {problem}")
                elif model is None:
                    report.passed.append("invalid-model")
                    feeds = {"x": np.random.default_rng(1).uniform(
                        -1, 1, (3, 16)).astype(np.float32)}
                    tolerance = outcome.tolerance or target.tolerance
                    try:
                        difference = _within(_run_onnx(source, feeds),
                                             _run_onnx(written, feeds), tolerance)
                    except Exception as exc:
                        difference = f"it does not run: {type(exc).__name__}: {exc}"
                    if difference:
                        report.problem("verification", f"pass '{pass_name}' changed the "
                                       f"model's outputs: {difference}")
                    else:
                        report.passed.append("verification")
        elif outcome is not None:
            report.notes.append(f"pass '{pass_name}' did not apply to the sample: "
                                f"{outcome.reason or '(no reason given)'}")
            if not outcome.reason:
                report.problem("pass-outcome", "applied=False needs a reason")
        # bad input: a corrupt file
        corrupt = work / "corrupt.onnx"
        corrupt.write_bytes(b"\x08\x07not a protobuf at all")
        bad = PassContext(input_path=corrupt, output_path=work / "corrupt-out.onnx",
                          target=target, options=dict(options or {}),
                          work_dir=context.work_dir)
        try:
            got = record.run(bad)
        except OnnxportError:
            report.passed.append("bad-input")
        except Exception as exc:
            report.problem("unnamed-error", f"pass '{pass_name}' raised a bare "
                           f"{type(exc).__name__} on a corrupt model ({exc}); raise "
                           "onnxport.BadInput or return PassOutcome(applied=False, "
                           "reason=...)")
        else:
            if isinstance(got, PassOutcome) and got.applied:
                report.problem("bad-input", f"pass '{pass_name}' said it applied to a "
                               "corrupt model")
            else:
                report.passed.append("bad-input")
    return report
