"""The float16 pass (onnxruntime's converter) on the GPU targets: real models, real
onnxruntime, on a machine without a GPU (the targets fall back to the CPU provider).

Timings are never asserted: without CUDA, mode auto is not timed and the more accurate
candidate ships; on a GPU the decision is checked against the figures the run recorded
(the verdict must follow from them), never against a number written here.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import onnxport
from onnxport.errors import BadInput
from onnxport.host import PluginHost, hookimpl
from onnxport.records import PassContext, Target

from conftest import assert_untouched, factory

PLANNER = factory("planner")


def _stage(artifact, name):
    return next(s for s in artifact.stages if s.stage == name)


def _target(name: str) -> Target:
    from onnxport_providers.targets import BUILTIN_TARGETS

    return next(t for t in BUILTIN_TARGETS if t.name == name)


class TestTargets:
    """A CPU target that lists float16, and the cuda target with float16 off."""

    @hookimpl
    def onnxport_register_targets(self, register):
        register(Target(name="cpu-float16", description="CPU, float16 listed",
                        passes=("float16",)))
        register(dataclasses.replace(_target("cuda"), name="cuda-float16-off",
                                     options={"float16": {"mode": "off"}}))


@pytest.fixture(scope="module")
def auto(tmp_path_factory):
    """One export, four targets: cuda (float16 auto), cpu (no float16 in its passes),
    a CPU target listing float16, cuda with float16 off."""
    host = PluginHost()
    out = tmp_path_factory.mktemp("auto") / "out"
    with host.registered(TestTargets(), "test-targets"):
        return onnxport.convert(PLANNER, output=out, latency_runs=0, host=host,
                                targets=["cuda", "cpu", "cpu-float16", "cuda-float16-off"])


@pytest.fixture(scope="module")
def required(tmp_path_factory):
    out = tmp_path_factory.mktemp("on") / "out"
    return onnxport.convert(PLANNER, output=out, targets=["cuda"], latency_runs=0,
                            pass_options={"float16": {"mode": "on"}})


def test_the_gpu_targets_run_float16_in_mode_auto():
    from onnxport_float16 import applies

    for name in ("cuda", "tensorrt"):
        target = _target(name)
        assert target.passes == ("simplify", "float16")
        assert target.options["float16"] == {"mode": "auto"} and applies(target)
    assert not applies(_target("cpu")) and "float16" not in _target("cpu").passes


def test_mode_on_ships_float16_weights_behind_a_float32_interface(required):
    import onnx
    from onnx import TensorProto

    from onnxport_float16.options import DEFAULT_TOLERANCE

    artifact = required.artifact("cuda")
    float16 = _stage(artifact, "float16")
    assert required.passed and artifact.final is float16, float16.reason
    assert artifact.verification.providers == ["CPUExecutionProvider"]  # no GPU here
    model = onnx.load(str(artifact.model_path))
    onnx.checker.check_model(model, full_check=True)  # the Casts in topological order
    floats = {i.data_type for i in model.graph.initializer} - {TensorProto.INT64}
    assert floats == {TensorProto.FLOAT16}
    interface = [*model.graph.input, *model.graph.output]
    assert {v.type.tensor_type.elem_type for v in interface} == {TensorProto.FLOAT}
    export = _stage(artifact, "export").info
    assert float16.info.inputs == export.inputs and float16.info.outputs == export.outputs
    # verified against PyTorch with the float16 budget: really float16, within it
    for batch in float16.verification.batches:
        for output in batch.outputs:
            assert output.tolerance == DEFAULT_TOLERANCE and output.passed
    assert 0 < float16.verification.max_abs < DEFAULT_TOLERANCE.atol
    settings = float16.settings
    assert settings["mode"] == "on" and settings["required"] is True
    assert settings["ops_converted"]["Gemm"] >= 1 and settings["casts_inserted"] >= 2
    sizes = settings["size_bytes"]
    assert sizes["after"] == artifact.model_path.stat().st_size
    assert 0.45 < sizes["after"] / sizes["before"] < 0.55
    fp32 = next(c for c in artifact.candidates if c.final is not float16)
    assert fp32.verdict == "not eligible" and fp32.cause == "needs float16"


def test_mode_auto_verifies_float16_and_the_choice_follows_the_figures(auto):
    from onnxport.flow.choosing import MARGIN, score

    from onnxport_float16.options import DEFAULT_TOLERANCE

    artifact = auto.artifact("cuda")
    assert auto.passed
    fp32, float16 = artifact.candidates
    assert [s.stage for s in float16.stages] == ["export", "simplify", "float16"]
    assert float16.final.verification.passed  # verified on the CPU fallback
    assert all(o.tolerance == DEFAULT_TOLERANCE
               for b in float16.final.verification.batches for o in b.outputs)
    if "CUDAExecutionProvider" not in fp32.final.verification.providers:
        # no CUDA here: CPU timings say nothing about the GPU, so none decides; the
        # more accurate candidate ships and the other says why
        assert fp32.latency_ms == {} and float16.latency_ms == {}
        errors = [c.final.verification.max_abs for c in (fp32, float16)]
        winner, loser = (fp32, float16) if errors[0] <= errors[1] else (float16, fp32)
        assert winner.verdict == "shipped" and artifact.final is winner.final
        assert loser.verdict == "lost" and "not timed" in loser.cause
        assert "CUDAExecutionProvider is not available here" in loser.reason
        assert "float16.mode=on" in winner.reason
    else:  # on a GPU: timed side by side
        assert set(fp32.latency_ms) == set(float16.latency_ms) == {1}
        # faster by more than the margin wins; within it, float16 (smaller) wins only
        # if no less accurate, else the more accurate fp32 stays
        errors = [c.final.verification.max_abs for c in (float16, fp32)]
        won = score(float16) < score(fp32) * (1 - MARGIN) or (
            score(float16) <= score(fp32) * (1 + MARGIN) and errors[0] <= errors[1])
        winner, loser = (float16, fp32) if won else (fp32, float16)
        assert winner.verdict == "shipped" and artifact.final is winner.final
        assert loser.verdict == "lost" and " ms at batch 1" in loser.reason
    if winner is fp32:
        stage = _stage(artifact, "float16")
        assert stage.status == "rejected" and stage.reason.startswith("lost: ")
    report = json.loads((auto.output / "report.json").read_text())
    listed = report["targets"]["cuda"]["candidates"]
    assert [c["stages"][-1] for c in listed] == ["simplify", "float16"]
    assert [c["verdict"] for c in listed] == [fp32.verdict, float16.verdict]
    assert listed[1]["passed"]
    assert listed[1]["max_abs"] == float16.final.verification.max_abs
    print("cuda on this CPU:", winner.name, "|", loser.reason)


def test_a_cpu_target_does_not_run_float16(auto):
    import onnx
    from onnx import TensorProto

    cpu = auto.artifact("cpu")
    assert "float16" not in [s.stage for s in cpu.stages]
    listed = _stage(auto.artifact("cpu-float16"), "float16")
    assert listed.status == "skipped" and listed.reason == "does not apply to cpu-float16"
    for name in ("cpu", "cpu-float16"):
        model = onnx.load(str(auto.artifact(name).model_path))
        assert TensorProto.FLOAT16 not in {i.data_type for i in model.graph.initializer}


def test_mode_off_does_not_apply(auto, tmp_path):
    from onnxport_float16.converting import convert

    off = _stage(auto.artifact("cuda-float16-off"), "float16")
    assert off.status == "skipped" and off.reason == "does not apply to cuda-float16-off"
    assert auto.artifact("cuda-float16-off").final.stage == "simplify"
    outcome = convert(PassContext(input_path=tmp_path / "unused.onnx", work_dir=tmp_path,
                                  output_path=tmp_path / "out.onnx",
                                  target=_target("cuda"), options={"mode": "off"}))
    assert not outcome.applied and outcome.reason == "float16.mode is off"


def test_an_unknown_or_wrong_float16_option_is_refused_before_any_work(tmp_path):
    out = tmp_path / "out"
    unknown_key = r"target 'cuda': unknown option float16\.block_op$"
    with pytest.raises(BadInput, match=unknown_key) as unknown:
        onnxport.convert(PLANNER, output=out, targets=["cuda"],
                         pass_options={"float16": {"block_op": ["Softmax"]}})
    assert "known options: atol, block_ops, min_cosine, mode, rtol, timeout" in \
        unknown.value.hint
    with pytest.raises(BadInput, match=r"float16\.mode must be one of off, on, auto, "
                                       r"not 'yes'"):
        onnxport.convert(PLANNER, output=out, targets=["cuda"],
                         pass_options={"float16": {"mode": "yes"}})
    with pytest.raises(BadInput, match=r"float16\.min_cosine must be at most 1"):
        onnxport.convert(PLANNER, output=out, targets=["cuda"],
                         pass_options={"float16": {"min_cosine": 1.5}})
    assert_untouched(out)


def _integers(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "a"], ["b"])], "ints",
        [helper.make_tensor_value_info("a", TensorProto.INT64, ["n"])],
        [helper.make_tensor_value_info("b", TensorProto.INT64, ["n"])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
              str(path))
    return path


def test_nothing_to_convert_is_skipped_in_auto_and_refused_in_on(tmp_path):
    from onnxport_float16.converting import convert

    def run(mode):
        return convert(PassContext(input_path=_integers(tmp_path / "ints.onnx"),
                                   output_path=tmp_path / "out" / "ints.onnx",
                                   target=_target("cuda"), options={"mode": mode},
                                   work_dir=tmp_path / "out"))

    before = list(sys.path)
    outcome = run("auto")
    assert sys.path == before  # onnxruntime.transformers was imported in the child only
    assert not outcome.applied
    assert outcome.reason == ("nothing to convert to float16 in ints.onnx: no op computes "
                              "in float32 (the model has Add x1)")
    assert not (tmp_path / "out" / "ints.onnx").exists()
    with pytest.raises(BadInput, match="nothing to convert to float16 in ints.onnx"):
        run("on")


def test_a_converter_that_does_not_finish_skips_in_auto_and_fails_in_on(tmp_path):
    from onnxport.errors import ExportFailed

    from onnxport_float16.converting import convert

    def run(mode):
        return convert(PassContext(input_path=_integers(tmp_path / "ints.onnx"),
                                   output_path=tmp_path / "out" / "ints.onnx",
                                   target=_target("cuda"), work_dir=tmp_path / "out",
                                   options={"mode": mode, "timeout": 0.001}))

    stopped = ("onnxruntime's float16 converter did not finish within 0.001 s and was "
               "stopped (raise float16.timeout for large models)")
    outcome = run("auto")
    assert not outcome.applied and outcome.reason == stopped
    with pytest.raises(ExportFailed, match=r"float16 conversion failed for target cuda: "
                                           + re.escape(stopped)):
        run("on")


def test_importing_the_plugin_imports_neither_onnx_nor_onnxruntime():
    code = ("import sys, onnxport_float16, onnxport_float16.options; "
            "print(sorted(m for m in ('onnx', 'onnxruntime') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"


def test_blocked_ops_stay_float32(tmp_path):
    """block_ops adds to onnxruntime's list: a blocked Relu computes in float32 between
    Casts, and the model still gives the float32 model's answers within the budget."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from onnxport_float16.converting import convert

    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["h"]),
         helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("MatMul", ["r", "V"], ["y"])], "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [numpy_helper.from_array(rng.standard_normal((8, 16)).astype(np.float32), "W"),
         numpy_helper.from_array(rng.standard_normal((16, 4)).astype(np.float32), "V")])
    source = tmp_path / "mlp.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
              str(source))
    outcome = convert(PassContext(input_path=source, output_path=tmp_path / "f16.onnx",
                                  target=_target("cuda"), work_dir=tmp_path,
                                  options={"block_ops": ["Relu"]}))
    assert outcome.applied and outcome.optional is True
    assert outcome.settings["ops_converted"] == {"MatMul": 2}
    assert outcome.settings["ops_kept_fp32"] == {"Relu": 1}
    assert outcome.settings["block_ops"] == ["Relu"]
    onnx.checker.check_model(str(outcome.path), full_check=True)
    feeds = {"x": rng.standard_normal((3, 8)).astype(np.float32)}
    ref, got = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
                .run(None, feeds)[0] for p in (source, outcome.path))
    assert got.dtype == np.float32
    assert np.allclose(got, ref, atol=outcome.tolerance.atol, rtol=outcome.tolerance.rtol)


def test_conformance_kit(tmp_path):
    import onnxport_float16
    from onnxport.testing import check_pass

    report = check_pass(onnxport_float16, name="float16", target=_target("cuda"),
                        work_dir=tmp_path / "kit")
    assert report.ok, report
    assert {"pass-outcome", "invalid-model", "verification", "bad-input"} <= \
        set(report.passed)
    on_cpu = check_pass(onnxport_float16, name="float16", work_dir=tmp_path / "cpu")
    assert any("does not apply" in note for note in on_cpu.notes), on_cpu
