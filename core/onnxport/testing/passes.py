"""`check_pass`: a pass plugin on a small model, held to the pipeline's own rule, and on
a corrupt file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from onnxport.errors import OnnxportError
from onnxport.records import Pass, PassContext, PassOutcome, Target
from onnxport.registry import missing_requirement
from onnxport.testing.hosts import as_plugin, name_for_plugin, work_dir_for
from onnxport.testing.registration import onnx_problem, registration_checks
from onnxport.testing.reports import ConformanceReport


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


def _within(reference: list, candidate: list, tolerance) -> str:
    """The pipeline's own pass rule (`onnxport.tolerance.compare_output`)."""
    from onnxport.tolerance import compare_output

    for index, (ref, got) in enumerate(zip(reference, candidate)):
        comparison = compare_output(f"output {index}", got, ref, tolerance)
        if not comparison.passed:
            return comparison.problem
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

    plugin = as_plugin(plugin)
    plugin_name = name_for_plugin(plugin, name)
    report = ConformanceReport(plugin_name)
    records = registration_checks(plugin, plugin_name, report)
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
    with work_dir_for(work_dir) as work:
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
                problem = onnx_problem(written)
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
