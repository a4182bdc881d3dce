"""The fp16 pass plugin: the conversion on hand-built graphs, the targets it applies to,
onnxport's conformance kit, and a real conversion of a torch model through the CLI's
Python API with the `cuda-fp16` and `cpu` targets side by side."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxport_fp16
from onnxport.errors import BadInput, VerificationFailed
from onnxport.host import PluginHost
from onnxport.tolerance import compare_output
from onnxport.records import PassContext, Target, Tolerance
from onnxport.testing import check_pass
from onnxport_fp16.running import run

GPU = Target(name="gpu", description="a CUDA target for the tests",
             providers=("CUDAExecutionProvider", "CPUExecutionProvider"), passes=("fp16",))
NO_GPU = not {"CUDAExecutionProvider", "TensorrtExecutionProvider"} & set(
    ort.get_available_providers())
F = TensorProto.FLOAT


def _model(nodes, inputs, outputs, initializers, path: Path) -> Path:
    graph = helper.make_graph(nodes, "test", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def _mlp(path: Path, scale: float = 1.0) -> Path:
    """x[batch, 64] -> 3 x (Gemm, Relu) -> Softmax: weights 2 x 256 x 256 + 64 x 256."""
    rng = np.random.default_rng(0)
    sizes = [64, 256, 256, 10]
    nodes, inits, previous = [], [], "x"
    for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        weight = rng.standard_normal((n_in, n_out)) * scale / np.sqrt(n_in)
        inits += [numpy_helper.from_array(weight.astype(np.float32), f"W{i}"),
                  numpy_helper.from_array(rng.standard_normal(n_out).astype(np.float32)
                                          * 0.1, f"B{i}")]
        nodes.append(helper.make_node("Gemm", [previous, f"W{i}", f"B{i}"], [f"g{i}"]))
        previous = f"g{i}"
        if i < len(sizes) - 2:
            nodes.append(helper.make_node("Relu", [previous], [f"r{i}"]))
            previous = f"r{i}"
    nodes.append(helper.make_node("Softmax", [previous], ["probs"]))
    return _model(nodes, [helper.make_tensor_value_info("x", F, ["batch", 64])],
                  [helper.make_tensor_value_info("probs", F, ["batch", 10]),
                   helper.make_tensor_value_info("g2", F, ["batch", 10])], inits, path)


def _run_pass(source: Path, tmp_path: Path, options=None, target: Target = GPU):
    context = PassContext(input_path=source, output_path=tmp_path / "out" / "model.onnx",
                          target=target, options=options or {}, work_dir=tmp_path / "out")
    return run(context)


def _outputs(path: Path, feeds) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def test_mlp_becomes_float16_inside_and_keeps_float32_at_its_edges(tmp_path):
    source = _mlp(tmp_path / "mlp.onnx")
    outcome = _run_pass(source, tmp_path)
    assert outcome.applied, outcome.reason
    converted = Path(outcome.path)
    onnx.checker.check_model(str(converted), full_check=True)
    model = onnx.load(str(converted))
    assert {i.data_type for i in model.graph.initializer} == {TensorProto.FLOAT16}
    interface = [*model.graph.input, *model.graph.output]
    assert [v.type.tensor_type.elem_type for v in interface] == [F, F, F]
    assert [v.name for v in model.graph.output] == ["probs", "g2"]  # names kept
    # g2 is an output and Softmax's input: one Cast back to float32 under its own name
    assert outcome.settings["ops_converted"] == {"Gemm": 3, "Relu": 2, "Softmax": 1}
    assert outcome.settings["casts_inserted"] == 3  # x in, probs and g2 out
    before, after = outcome.settings["size_before"], outcome.settings["size_after"]
    assert before == source.stat().st_size and after == converted.stat().st_size
    assert 0.45 < after / before < 0.55, (before, after)
    feeds = {"x": np.random.default_rng(1).standard_normal((5, 64)).astype(np.float32)}
    for name, ref, got in zip(["probs", "g2"], _outputs(source, feeds),
                              _outputs(converted, feeds)):
        assert got.dtype == np.float32
        comparison = compare_output(name, got, ref, outcome.tolerance)
        assert comparison.passed, comparison.problem
        assert 0 < comparison.max_abs < 1e-2  # really float16: not bit-identical


def test_the_float16_budget_and_its_options(tmp_path):
    source = _mlp(tmp_path / "mlp.onnx")
    outcome = _run_pass(source, tmp_path)
    assert outcome.tolerance == Tolerance(atol=1e-2, rtol=1e-2, min_cosine=0.999)
    assert outcome.optional is True  # a miss ships the float32 model, with the reason
    required = _run_pass(source, tmp_path, {"required": True, "atol": 0.05})
    assert required.optional is False and required.tolerance.atol == 0.05
    with pytest.raises(BadInput, match="fp16.rtol must be a number"):
        _run_pass(source, tmp_path, {"rtol": "small"})


@pytest.mark.skipif(not NO_GPU, reason="with a GPU provider the verification sees it")
def test_a_model_that_overflows_float16_is_refused_although_the_cpu_runs_it(tmp_path):
    # Weights 300x larger: activations pass 65504, inf in float16 arithmetic.
    source = _mlp(tmp_path / "big.onnx", scale=300.0)
    outcome = _run_pass(source, tmp_path)
    assert not outcome.applied
    assert "inf or NaN in float16 arithmetic" in outcome.reason, outcome.reason
    assert outcome.settings["emulated_fp16"]["passed"] is False
    # what the verification would have run: onnxruntime's CPU provider computes the
    # float16 model in float32 inside and gives finite numbers, close to float32's
    feeds = {"x": np.random.default_rng(1).standard_normal((5, 64)).astype(np.float32)}
    cpu_run = _outputs(tmp_path / "out" / "model.onnx", feeds)[1]
    assert np.isfinite(cpu_run).all() and np.abs(cpu_run).max() > 65504
    with pytest.raises(VerificationFailed, match="misses the float16 budget"):
        _run_pass(source, tmp_path, {"required": True})


def test_applies_only_to_targets_with_a_gpu_provider():
    host = PluginHost()
    targets = host.registrations("target")
    record = host.registrations("pass")["fp16"].record
    assert record.applies is onnxport_fp16.applies
    assert not record.applies(targets["cpu"].record)
    assert not record.applies(targets["x86-avx2"].record)
    assert record.applies(targets["cuda"].record)
    assert record.applies(targets["tensorrt"].record)
    assert record.applies(targets["cuda-fp16"].record)


def test_cuda_fp16_is_the_builtin_cuda_target_with_fp16_for_float16():
    targets = PluginHost().registrations("target")
    cuda, fp16 = targets["cuda"].record, targets["cuda-fp16"].record
    assert targets["cuda-fp16"].plugin == "fp16"
    assert "float16" in cuda.passes  # onnxport's built-in pass, replaced here
    assert fp16.passes == tuple("fp16" if p == "float16" else p for p in cuda.passes)
    assert fp16.options == {k: v for k, v in cuda.options.items() if k != "float16"}
    for field in ("runner", "providers", "provider_options", "allow_fallback",
                  "tolerance", "graph_optimization_level", "opset_min", "opset_max"):
        assert getattr(fp16, field) == getattr(cuda, field), field


def test_blocked_ops_and_subgraphs_stay_float32_between_casts(tmp_path):
    """TopK is blocked; an If keeps its branches float32 and reads the outer MatMul's
    float16 output through a Cast; both still give the float32 model's answers."""
    vi = helper.make_tensor_value_info
    rng = np.random.default_rng(0)
    then_branch = helper.make_graph([helper.make_node("Relu", ["h"], ["t"])], "then", [],
                                    [vi("t", F, ["batch", 8])])
    else_branch = helper.make_graph([helper.make_node("Neg", ["h"], ["e"])], "else", [],
                                    [vi("e", F, ["batch", 8])])
    source = _model(
        [helper.make_node("MatMul", ["x", "W"], ["h"]),
         helper.make_node("ReduceSum", ["h"], ["s"], keepdims=0),
         helper.make_node("Greater", ["s", "zero"], ["positive"]),
         helper.make_node("If", ["positive"], ["branch"], then_branch=then_branch,
                          else_branch=else_branch),
         helper.make_node("TopK", ["branch", "k"], ["top", "index"]),
         helper.make_node("Add", ["top", "bias"], ["y"])],
        [vi("x", F, ["batch", 8])], [vi("y", F, ["batch", 3])],
        [numpy_helper.from_array(rng.standard_normal((8, 8)).astype(np.float32), "W"),
         numpy_helper.from_array(np.array(0, np.float32), "zero"),
         numpy_helper.from_array(np.array([3], np.int64), "k"),
         numpy_helper.from_array(np.ones(3, np.float32), "bias")], tmp_path / "flow.onnx")
    outcome = _run_pass(source, tmp_path)
    assert outcome.applied, outcome.reason
    kept = outcome.settings["ops_kept_fp32"]
    assert set(kept) == {"If", "TopK"} and "subgraph" in kept["If"]["why"]
    assert outcome.settings["ops_converted"] == {"Add": 1, "Greater": 1, "MatMul": 1,
                                                  "ReduceSum": 1}
    model = onnx.load(str(outcome.path))
    onnx.checker.check_model(model, full_check=True)
    by_output = {o: n for n in model.graph.node for o in n.output}
    node_if = next(n for n in model.graph.node if n.op_type == "If")
    branch_reads = {i for a in node_if.attribute for n in a.g.node for i in n.input}
    assert branch_reads == {"h_to_fp32"} and by_output["h_to_fp32"].op_type == "Cast"
    topk = next(n for n in model.graph.node if n.op_type == "TopK")
    assert by_output[topk.input[0]].op_type == "If"  # float32 in, no Cast needed
    add = next(n for n in model.graph.node if n.op_type == "Add")
    assert by_output[add.input[0]].op_type == "Cast"  # TopK's float32 -> float16
    for sign in (1, -1):  # both branches
        feeds = {"x": (sign * np.abs(rng.standard_normal((4, 8)))).astype(np.float32)}
        ref, got = _outputs(source, feeds)[0], _outputs(Path(outcome.path), feeds)[0]
        assert compare_output("y", got, ref, outcome.tolerance).passed


def test_weights_beyond_float16_range_are_clipped_and_counted(tmp_path):
    weights = np.full((4, 4), 1e-3, np.float32)
    weights[0, 0], weights[1, 1], weights[2, 2] = 1e6, -7e4, 1e-9
    source = _model([helper.make_node("MatMul", ["x", "W"], ["y"])],
                    [helper.make_tensor_value_info("x", F, ["batch", 4])],
                    [helper.make_tensor_value_info("y", F, ["batch", 4])],
                    [numpy_helper.from_array(weights, "W")], tmp_path / "wide.onnx")
    outcome = _run_pass(source, tmp_path)
    assert outcome.settings["values_clipped"] == 2
    assert outcome.settings["values_flushed_to_zero"] == 1
    assert any("2 weight value(s) beyond float16's range were clipped" in w
               for w in outcome.warnings)
    written = onnx.load(str(tmp_path / "out" / "model.onnx"))
    stored = numpy_helper.to_array(written.graph.initializer[0])
    assert stored.dtype == np.float16
    assert (stored[0, 0], stored[1, 1], stored[2, 2]) == (65504, -65504, 0)
    if NO_GPU:  # the clipped weight changes the answer: the emulation refuses it
        assert not outcome.applied and "differ by more than" in outcome.reason


@pytest.mark.skipif(not NO_GPU, reason="this onnxruntime has a GPU provider")
def test_says_which_nodes_the_cpu_provider_really_runs_in_float16(tmp_path):
    outcome = _run_pass(_mlp(tmp_path / "mlp.onnx"), tmp_path)
    cpu = outcome.settings["cpu_provider"]
    assert cpu["ran_in_float32"].get("Gemm") == 3  # no float16 Gemm kernel on CPU
    assert sum(cpu["ran_in_float16"].values()) + sum(cpu["ran_in_float32"].values()) == 6
    emulated = outcome.settings["emulated_fp16"]
    assert emulated["passed"] and set(emulated["outputs"]) == {"probs", "g2"}
    assert 0 < emulated["outputs"]["g2"]["max_abs"] < 1e-2
    assert any("verified on the CPU provider" in w and "Emulated float16" in w
               for w in outcome.warnings)


def test_corrupt_missing_and_foreign_files_are_bad_input(tmp_path):
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07not a protobuf at all")
    with pytest.raises(BadInput, match="not a readable ONNX model"):
        _run_pass(corrupt, tmp_path)
    with pytest.raises(BadInput, match="does not exist"):
        _run_pass(tmp_path / "missing.onnx", tmp_path)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")  # parses as an empty ModelProto
    with pytest.raises(BadInput, match="not an ONNX model"):
        _run_pass(empty, tmp_path)
    with pytest.raises(BadInput, match="unknown option fp16.block_op"):
        _run_pass(_mlp(tmp_path / "mlp.onnx"), tmp_path, {"block_op": ["Gemm"]})


def test_nothing_to_convert_is_not_applied(tmp_path):
    source = _model([helper.make_node("Add", ["a", "a"], ["b"])],
                    [helper.make_tensor_value_info("a", TensorProto.INT64, ["n"])],
                    [helper.make_tensor_value_info("b", TensorProto.INT64, ["n"])], [],
                    tmp_path / "ints.onnx")
    outcome = _run_pass(source, tmp_path)
    assert not outcome.applied and outcome.reason.startswith("nothing to convert")
    blocked = _run_pass(_mlp(tmp_path / "mlp.onnx"), tmp_path,
                        {"block_ops": ["Gemm", "Relu", "Softmax"]})
    assert not blocked.applied and "Gemm x3" in blocked.reason


def test_conformance_kit(tmp_path):
    report = check_pass(onnxport_fp16, target=GPU, work_dir=tmp_path / "kit")
    assert report.ok, report
    assert {"pass-outcome", "invalid-model", "verification", "bad-input"} <= \
        set(report.passed)
    on_cpu = check_pass(onnxport_fp16, work_dir=tmp_path / "kit-cpu")
    assert any("does not apply" in note for note in on_cpu.notes), on_cpu


def test_convert_ships_fp16_for_cuda_fp16_and_fp32_for_cpu(tmp_path):
    import torch

    import onnxport

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(32, 128), torch.nn.ReLU(),
                                torch.nn.Linear(128, 128), torch.nn.ReLU(),
                                torch.nn.Linear(128, 4)).eval()
    example = torch.randn(2, 32)
    result = onnxport.convert(model, example, output=tmp_path / "out",
                              output_names=["logits"], targets=("cuda-fp16", "cpu"),
                              latency_runs=0)
    assert result.passed
    types = {}
    for name in ("cuda-fp16", "cpu"):
        path = result.artifact(name).model_path
        model_proto = onnx.load(str(path))
        types[name] = {i.data_type for i in model_proto.graph.initializer
                       if i.data_type in (F, TensorProto.FLOAT16)}
        assert [o.type.tensor_type.elem_type for o in model_proto.graph.output] == [F]
    assert types == {"cuda-fp16": {TensorProto.FLOAT16}, "cpu": {F}}
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    manifest = json.loads((tmp_path / "out" / "cuda-fp16" / "manifest.json").read_text())
    fp16 = next(p for p in manifest["passes"] if p["name"] == "fp16")
    assert fp16["status"] == "ok" and fp16["settings"]["ops_converted"]["Gemm"] == 3
    assert fp16["settings"]["size_ratio"] < 0.6
    assert manifest["verification"]["passed"]
    assert manifest["verification"]["batches"][0]["outputs"][0]["tolerance"]["atol"] == 1e-2
    stages = {s["stage"]: s for s in report["targets"]["cuda-fp16"]["stages"]}
    assert stages["fp16"]["status"] == "ok" and stages["fp16"]["verification"]["passed"]
    assert stages["fp16"]["size_bytes"] < 0.6 * stages["export"]["size_bytes"]
    assert "fp16" not in [s["stage"] for s in report["targets"]["cpu"]["stages"]]
    cpu_manifest = json.loads((tmp_path / "out" / "cpu" / "manifest.json").read_text())
    assert "fp16" not in [p["name"] for p in cpu_manifest["passes"]]
    if NO_GPU:
        assert manifest["target"]["ran_on"] == ["CPUExecutionProvider"]
        assert any("fp16: no GPU provider the target asks for" in w
                   for w in report["targets"]["cuda-fp16"]["warnings"])
