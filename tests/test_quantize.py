"""The quantize pass (onnxruntime dynamic INT8): real models, real onnxruntime.

Timings are never asserted: mode auto's decision is tested through the figures it
reports (the decision must follow from them) and through prefer = "size", which is
deterministic.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import onnxport
from onnxport.errors import BadInput, ExitCode, VerificationFailed
from onnxport.host import PluginHost, hookimpl
from onnxport.records import PassContext, Target

from conftest import assert_untouched, factory

THIS = Path(__file__).resolve()


def _stage(artifact, name):
    return next(s for s in artifact.stages if s.stage == name)


def _ops(path: Path) -> set[str]:
    import onnx

    return {n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node}


# --------------------------------------------------------------------------- mode on


@pytest.fixture(scope="module")
def wakeword_int8(tmp_path_factory):
    out = tmp_path_factory.mktemp("wakeword") / "out"
    return onnxport.convert(factory("wakeword"), output=out, targets=["cpu"],
                            quantize="on", classifiers=["logits"], latency_runs=0)


class TestTargets:
    @hookimpl
    def onnxport_register_targets(self, register):
        register(Target(name="int8-on", description="INT8, required",
                        passes=("simplify", "quantize"),
                        options={"quantize": {"mode": "on"}}))
        register(Target(name="edge-size", description="INT8 where it is smaller",
                        passes=("simplify", "quantize"), prefer="size",
                        options={"quantize": {"mode": "auto"}}))


@pytest.fixture(scope="module")
def autopilot(tmp_path_factory):
    """One export, three targets: INT8 required, auto by speed (x86-avx2), auto by size."""
    host = PluginHost()
    with host.registered(TestTargets(), "test-targets"):
        return onnxport.convert(factory("autopilot_torch"),
                                output=tmp_path_factory.mktemp("autopilot") / "out",
                                targets=["int8-on", "x86-avx2", "edge-size"],
                                latency_runs=0, host=host)


@pytest.mark.parametrize("name, target, quantized", [
    ("wakeword_int8", "cpu", {"MatMul", "Gemm"}),  # Linear layers (onnxsim: MatMul+Add->Gemm)
    ("autopilot", "int8-on", {"LSTM", "Gemm"}),
])
def test_int8_is_at_most_035x_fp32_and_meets_its_budget(request, name, target, quantized):
    result = request.getfixturevalue(name)
    artifact = result.artifact(target)
    export, int8 = _stage(artifact, "export"), _stage(artifact, "quantize")
    fp32 = next(s for s in artifact.stages if s.stage != "quantize" and s.status == "ok"
                and s is not export) if len(artifact.stages) > 2 else export
    assert int8.status == "ok" and int8.verification.passed, int8.reason
    assert artifact.final is int8 and result.passed
    assert int8.reason.startswith("shipped: the only one with quantize (required)")
    assert int8.settings["chosen"] == ("the run requires quantize (mode on), and this is "
                                       "the only candidate with it; it met its budget")
    # Size: against the exported file and against the (simplified) fp32 model it replaced.
    assert int8.info.size_bytes <= 0.35 * export.info.size_bytes
    assert int8.info.size_bytes <= 0.35 * fp32.info.size_bytes
    assert int8.settings["size_bytes"] == {"before": fp32.info.size_bytes,
                                           "after": int8.info.size_bytes}
    assert set(int8.settings["quantized_nodes"]) <= quantized
    # Verified against PyTorch with the INT8 budget, not the fp32 one.
    budget = artifact.target.quantized_tolerance
    for batch in int8.verification.batches:
        for output in batch.outputs:
            assert output.tolerance == budget and output.passed
            assert output.cosine >= budget.min_cosine
    ops = _ops(artifact.model_path)
    assert "MatMulInteger" in ops or "DynamicQuantizeLSTM" in ops
    assert "ConvInteger" not in ops  # Conv is never quantized unless asked for
    print(f"{name}: INT8 {int8.info.size_bytes} B = "
          f"{int8.info.size_bytes / export.info.size_bytes:.3f}x export, "
          f"{int8.info.size_bytes / fp32.info.size_bytes:.3f}x simplified fp32; "
          f"max abs {int8.verification.max_abs:.2e}; {int8.settings['quantized_nodes']}")


def test_a_declared_classifier_gets_its_argmax_floor_in_the_int8_stage(wakeword_int8):
    artifact = wakeword_int8.artifact("cpu")
    for stage, floor in (("export", None), ("quantize", 0.98)):
        for batch in _stage(artifact, stage).verification.batches:
            (logits,) = batch.outputs
            assert logits.classifier and logits.argmax_agreement == 1.0
            assert logits.tolerance.min_argmax_agreement == floor
    report = json.loads((wakeword_int8.output / "report.json").read_text())
    assert report["verification_settings"]["classifiers"] == ["logits"]


def _boundary_inputs(path: Path, rows: int = 8) -> None:
    """Wakeword inputs on its decision boundary, alternately just on one side and the
    other (logit gap +-1e-5 in fp32): far above fp32's error (~1e-7) and far below
    INT8's (~1e-3), so INT8 moves some of them across."""
    from conftest import zoo_module

    model, _, _ = zoo_module("wakeword").build()
    for p in model.parameters():
        p.requires_grad_(False)
    start = torch.rand(rows, 1024, 128, generator=torch.Generator().manual_seed(0)) * 2 - 1
    wanted = torch.tensor([1e-5 if i % 2 else -1e-5 for i in range(rows)])
    x = start.clone().requires_grad_(True)
    gap = (lambda y: y[:, 0] - y[:, 1] - wanted)
    gap(model(x)).sum().backward()
    direction = x.grad.sign()
    with torch.inference_mode():
        lo, hi = torch.zeros(rows), torch.full((rows,), 0.05)
        g_lo, g_hi = gap(model(start)), gap(model(start + 0.05 * direction))
        for _ in range(4):  # secant steps along the gradient's sign
            t = lo - g_lo * (hi - lo) / (g_hi - g_lo)
            inputs = start + t[:, None, None] * direction
            g = gap(model(inputs))
            below = g < 0
            lo, g_lo = torch.where(below, t, lo), torch.where(below, g, g_lo)
            hi, g_hi = torch.where(below, hi, t), torch.where(below, g_hi, g)
        logits = model(inputs)
    assert (logits.argmax(-1) == torch.tensor([i % 2 == 0 for i in range(rows)])).all()
    assert float(g.abs().max()) < 2e-6
    np.savez(path, input_values=inputs.numpy())


@pytest.mark.slow
def test_the_argmax_floor_fails_int8_that_flips_classes(tmp_path):
    data = tmp_path / "boundary.npz"
    _boundary_inputs(data)
    common = dict(targets=["cpu"], quantize="on", data=data, latency_runs=0)
    with pytest.raises(VerificationFailed) as failed:
        onnxport.convert(factory("wakeword"), output=tmp_path / "out",
                         classifiers=["logits"], **common)
    assert re.search(r"data logits: .*argmax agrees on \d+\.\d%, below 98\.0%",
                     failed.value.message)
    print(failed.value.message)
    assert_untouched(tmp_path / "out")
    # The fp32 stages met the same data; only INT8 flipped classes.
    artifact = failed.value.result.artifact("cpu")
    assert [(s.stage, s.status) for s in artifact.stages if s.status != "skipped"] == [
        ("export", "ok"), ("simplify", "ok"), ("quantize", "failed")]
    # Not declared a classifier: the floor does not apply to the same model.
    try:
        result = onnxport.convert(factory("wakeword"), output=tmp_path / "plain", **common)
        problem = ""
        artifact = result.artifact("cpu")
    except VerificationFailed as exc:
        problem = exc.message
        artifact = exc.result.artifact("cpu")
    assert "argmax" not in problem
    for batch in _stage(artifact, "quantize").verification.batches:
        assert not batch.outputs[0].classifier


# --------------------------------------------------------------------------- mode auto


def test_auto_makes_int8_a_candidate_and_the_choice_follows_the_figures(autopilot):
    assert autopilot.passed
    # prefer = size: deterministic, the INT8 candidate ships because it is smallest.
    sized = autopilot.artifact("edge-size")
    assert sized.final is _stage(sized, "quantize")
    shipped = next(c for c in sized.candidates if c.verdict == "shipped")
    assert [s.stage for s in shipped.stages] == ["export", "simplify", "quantize"]
    lost = next(c for c in sized.candidates if c.verdict == "lost")
    assert lost.cause == "larger (prefer = size)"
    # prefer = speed (x86-avx2): both timed side by side at batch 1 and 8; the one that
    # ships is the faster by the recorded figures (or, within 5%, the safer fp32).
    from onnxport.flow.choosing import MARGIN, score

    artifact = autopilot.artifact("x86-avx2")
    fp32, int8 = artifact.candidates
    assert set(fp32.latency_ms) == set(int8.latency_ms) == {1, 8}
    winner = next(c for c in artifact.candidates if c.verdict == "shipped")
    expected = int8 if score(int8) < score(fp32) * (1 - MARGIN) else fp32
    assert winner is expected, (fp32.latency_ms, int8.latency_ms)
    assert artifact.final is winner.final
    loser = fp32 if winner is int8 else int8
    assert loser.verdict == "lost" and " ms at batch 1, " in loser.reason
    if winner is fp32:
        assert _stage(artifact, "quantize").status == "rejected"
    manifest = json.loads((autopilot.output / "x86-avx2" / "manifest.json").read_text())
    report = json.loads((autopilot.output / "report.json").read_text())
    assert [c["verdict"] for c in report["targets"]["x86-avx2"]["candidates"]] == [
        fp32.verdict, int8.verdict]
    assert manifest["passes"][-1]["name"] == "quantize"
    print("x86-avx2:", winner.reason, "| loser:", loser.reason)


def test_the_choice_rules():
    """Faster by more than 5% wins; within it, a smaller and no less accurate candidate
    wins, else the more accurate stays; prefer = size takes the smallest."""
    from onnxport.conversion import Candidate, StageResult, Verification
    from onnxport.artifact.modelinfo import ModelInfo
    from onnxport.flow.choosing import _pick

    def candidate(name, ms, size, error):
        info = ModelInfo("m", size, 8, {}, "", [], [], 1, {}, 0)
        verification = Verification(True, [], [], {}, [])
        verification.__class__ = type("V", (Verification,), {"max_abs": error})
        stage = StageResult(name, "ok", None, info, verification)
        return Candidate(name, [stage], latency_ms={1: {"p50": ms, "p90": ms}})

    fp32 = candidate("fp32", 1.0, 2_400_000, 1e-8)
    assert _pick([fp32, candidate("int8", 0.5, 600_000, 1e-3)], "speed").name == "int8"
    assert _pick([fp32, candidate("int8", 0.98, 600_000, 1e-3)], "speed") is fp32
    assert _pick([fp32, candidate("int8", 1.3, 600_000, 1e-3)], "speed") is fp32
    assert _pick([fp32, candidate("fused", 0.99, 2_300_000, 1e-8)], "speed").name == "fused"
    assert _pick([fp32, candidate("int8", 1.3, 600_000, 1e-3)], "size").name == "int8"


# --------------------------------------------------------------------------- nothing to do


class ConvRelu(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 3),
                                  nn.ReLU())

    def forward(self, image):
        return self.body(image)


def conv_relu():
    """Factory for the CLI: a model of only Conv and Relu."""
    return ConvRelu().eval(), {"image": torch.randn(2, 1, 8, 8)}, ["features"]


NOTHING = ("nothing to quantize in conv_relu.onnx: no MatMul, Gemm, LSTM, Attention or "
           "Gather node with constant float weights (op types looked for: MatMul, Gemm, "
           "LSTM, Attention, Gather; the model has Conv x2, Relu x2)")


def test_nothing_to_quantize_is_an_error_in_mode_on(cli, tmp_path):
    out = tmp_path / "out"
    result = cli("convert", f"{THIS}:conv_relu", "-o", out, "--name", "conv_relu",
                 "--quantize", "on", "--latency-runs", "0")
    assert result.code == ExitCode.BAD_INPUT
    assert NOTHING in result.err
    assert "Conv is left out unless quantize.op_types lists it" in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert_untouched(out)


def test_nothing_to_quantize_is_skipped_with_the_reason_in_mode_auto(tmp_path):
    result = onnxport.convert(f"{THIS}:conv_relu", output=tmp_path / "out", name="conv_relu",
                              targets=["x86-avx2"], latency_runs=0)
    stage = _stage(result.artifact("x86-avx2"), "quantize")
    assert stage.status == "skipped" and stage.reason == NOTHING
    assert result.passed and result.artifact("x86-avx2").final.stage == "simplify"
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    stages = {s["stage"]: s for s in report["targets"]["x86-avx2"]["stages"]}
    assert stages["quantize"]["reason"] == NOTHING


# --------------------------------------------------------------------------- op types


@pytest.fixture(scope="module")
def mlp_onnx(tmp_path_factory):
    """Linear layers as the exporters write them: a Gemm (2-D input) and a MatMul + Add
    (3-D input), exported with the TorchScript exporter (fast)."""

    class Mixed(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.gemm = nn.Linear(16, 32)
            self.matmul = nn.Linear(32, 32)

        def forward(self, x):
            return self.matmul(self.gemm(x).unsqueeze(1).repeat(1, 3, 1))

    path = tmp_path_factory.mktemp("mlp") / "mixed.onnx"
    torch.onnx.export(Mixed().eval(), (torch.randn(2, 16),), str(path), dynamo=False,
                      input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    assert {"Gemm", "MatMul"} <= _ops(path)
    return path


def _run(tmp_path, model, **options):
    from onnxport_providers.targets import BUILTIN_TARGETS
    from onnxport_quantize.quantizing import quantize

    cpu = next(t for t in BUILTIN_TARGETS if t.name == "cpu")
    return quantize(PassContext(input_path=model, output_path=tmp_path / "int8.onnx",
                                target=cpu, options=options, work_dir=tmp_path))


@pytest.mark.parametrize("op_types, counts", [
    (["MatMul", "Gemm"], {"MatMul": 1, "Gemm": 1}),
    (["MatMul"], {"MatMul": 1}),  # the Gemm quantize_dynamic rewrites stays fp32
    (["Gemm"], {"Gemm": 1}),  # only the rewritten Gemm is quantized
    (["MatMul", "GRU"], {"MatMul": 1}),
])
def test_op_types_select_exactly_what_is_quantized(tmp_path, mlp_onnx, op_types, counts):
    outcome = _run(tmp_path, mlp_onnx, mode="on", op_types=op_types)
    assert outcome.applied and outcome.settings["quantized_nodes"] == counts
    assert outcome.optional is False and outcome.tolerance.min_cosine == 0.99
    assert outcome.settings["pre_process"] == "ok"
    if "GRU" in op_types:
        assert "no dynamic INT8 GRU kernel" in outcome.settings["not_quantized"]["GRU"]
    integer = [n for n in _ops(outcome.path) if n in ("MatMulInteger",)]
    assert integer == ["MatMulInteger"]


def test_reduce_range_per_channel_and_uint8_weights_are_applied(tmp_path, mlp_onnx):
    import onnx

    outcome = _run(tmp_path, mlp_onnx, mode="auto", weight_type="QUInt8",
                   per_channel=True, reduce_range=True)
    assert outcome.applied and outcome.optional is True
    assert outcome.settings["weight_type"] == "QUInt8"
    assert outcome.settings["per_channel"] and outcome.settings["reduce_range"]
    model = onnx.load(str(outcome.path))
    weights = [i for i in model.graph.initializer if i.name.endswith("_quantized")]
    assert weights and all(w.data_type == onnx.TensorProto.UINT8 for w in weights)
    scales = [i for i in model.graph.initializer if i.name.endswith("_scale")
              and len(i.dims) == 1 and i.dims[0] == 32]
    assert scales, "per-channel weights have one scale per output channel"
    from onnx import numpy_helper

    values = np.concatenate([numpy_helper.to_array(w).ravel() for w in weights])
    assert values.max() <= 127, "reduce_range: 7-bit weights"


def test_quantize_options_are_checked(tmp_path, mlp_onnx):
    with pytest.raises(BadInput, match=r"target 'cpu': unknown option quantize.bits"):
        _run(tmp_path, mlp_onnx, mode="on", bits=8)
    with pytest.raises(BadInput, match=r"quantize.weight_type must be one of QInt8, "
                                       r"QUInt8, not 'int8'"):
        _run(tmp_path, mlp_onnx, mode="on", weight_type="int8")
    with pytest.raises(BadInput, match=r"quantize.op_types names 'Matmul'") as typo:
        _run(tmp_path, mlp_onnx, mode="on", op_types=["Matmul"])
    assert typo.value.hint == "did you mean 'MatMul'?"
    with pytest.raises(BadInput, match=r"names 'Softmax', which onnxruntime's dynamic "
                                       r"quantization cannot quantize"):
        _run(tmp_path, mlp_onnx, mode="on", op_types=["Softmax"])


def test_a_target_without_quantize_mode_off_does_not_run_the_pass():
    from onnxport_quantize import mode

    assert mode(Target(name="t", description="", passes=("quantize",))) == "auto"
    assert mode(Target(name="t", description="",
                       options={"quantize": {"mode": "off"}})) == "off"
