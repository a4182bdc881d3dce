"""The search for the fastest verified model of each target: alternatives become
candidates, each is verified against the source, a candidate that fails is never
shipped, static INT8 calibrates on the reference model's own calibration set, and
--optimize thorough makes a candidate of each export route."""

from __future__ import annotations

import json

import numpy as np
import pytest

import onnxport
from onnxport.host import PluginHost, hookimpl
from onnxport.records import Pass, PassOutcome, Target

from conftest import factory, zoo_module


class FastButWrong:
    """An alternative pass whose model is much faster (it drops the whole network for a
    constant) and wrong: verification must keep it from shipping."""

    @hookimpl
    def onnxport_register_passes(self, register):
        register(Pass(name="shortcut", description="a constant output", run=_constant,
                      alternative=True, optional=True))

    @hookimpl
    def onnxport_register_targets(self, register):
        register(Target(name="greedy", description="simplify, then the shortcut",
                        passes=("simplify", "shortcut")))


def _constant(context):
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(context.input_path))
    graph = model.graph
    output = graph.output[0]
    shape = [d.dim_value or 1 for d in output.type.tensor_type.shape.dim]
    value = numpy_helper.from_array(np.zeros(shape[1:], np.float32), "zeros")
    first = graph.input[0].name
    nodes = [helper.make_node("Shape", [first], ["rows"], start=0, end=1),
             helper.make_node("Concat", ["rows", "tail"], ["shape"], axis=0),
             helper.make_node("Expand", ["zeros", "shape"], [output.name])]
    tail = numpy_helper.from_array(np.array(shape[1:], np.int64), "tail")
    new = helper.make_graph(nodes, "shortcut", list(graph.input), [output], [value, tail])
    onnx.save(helper.make_model(new, opset_imports=model.opset_import), str(context.output_path))
    return PassOutcome(applied=True, path=context.output_path)


def test_a_faster_candidate_that_fails_verification_never_ships(tmp_path):
    host = PluginHost(selection="torch,providers,onnxsim")
    with host.registered(FastButWrong(), "fast-but-wrong"):
        result = onnxport.convert(factory("planner"), output=tmp_path / "out",
                                  targets=["greedy"], latency_runs=0, host=host)
    artifact = result.artifact("greedy")
    shortcut = next(s for s in artifact.stages if s.stage == "shortcut")
    assert shortcut.status == "rejected" and "failed verification" in shortcut.reason
    assert artifact.final.stage == "simplify" and result.passed
    assert artifact.candidates == []  # the wrong model was never a candidate


def test_static_int8_calibrates_on_the_reference_calibration_set(tmp_path):
    calibration = tmp_path / "planner.npz"
    np.savez(calibration, **zoo_module("planner").calibration_set())
    result = onnxport.convert(factory("planner"), output=tmp_path / "out",
                              targets=["x86-avx2"], calibration_data=calibration,
                              latency_runs=0)
    artifact = result.artifact("x86-avx2")
    static = next(s for s in artifact.stages if s.stage == "quantize (method=static)")
    assert static.verification.passed, static.verification.problem
    assert static.settings["method"] == "static" and static.settings["format"] == "QDQ"
    assert static.settings["calibration"] == {"source": str(calibration), "samples": 64}
    assert static.settings["quantized_nodes"]["Conv"] == 3
    names = [c.name for c in artifact.candidates]
    assert names == ["dynamo > simplify", "dynamo > simplify > quantize",
                     "dynamo > simplify > quantize (method=static)"]
    assert sum(c.verdict == "shipped" for c in artifact.candidates) == 1
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    listed = report["targets"]["x86-avx2"]["candidates"]
    assert [c["verdict"] for c in listed].count("shipped") == 1
    assert all(set(c["latency_ms"]) == {"1", "8"} for c in listed)


def test_thorough_makes_a_candidate_of_each_export_route(tmp_path, cli):
    done = cli("convert", factory("autopilot_torch"), "-o", tmp_path / "out",
               "--target", "x86-avx2", "--optimize", "thorough", "--latency-runs", "0")
    assert done.code == 0, done.err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    names = [c["name"] for c in report["targets"]["x86-avx2"]["candidates"]]
    assert {n.split(" > ")[0] for n in names} == {"dynamo", "torchscript"}
    assert any("quantize (per_channel=true)" in n for n in names)
    stages = {s["stage"] for s in report["targets"]["x86-avx2"]["stages"]}
    assert "quantize (method=static)" in stages  # tried; it ships only if it verifies
    assert "static INT8 was calibrated on 16 synthetic random inputs" in \
        " ".join(done.out.split())


def test_the_fuse_pass_is_a_candidate_on_a_transformer(tmp_path):
    transformers = pytest.importorskip("transformers")
    import torch

    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=64,
                                     attn_implementation="eager")
    model = transformers.BertModel(config).eval()
    ids = torch.randint(5, 100, (2, 12))
    result = onnxport.convert(model, {"input_ids": ids, "attention_mask": torch.ones_like(ids)},
                              output=tmp_path / "bert", exporter="torchscript",
                              targets=["x86-avx2"], quantize="off", latency_runs=0)
    artifact = result.artifact("x86-avx2")
    fuse = next(s for s in artifact.stages if s.stage == "fuse")
    assert fuse.verification.passed and fuse.settings["fused"]
    assert len(artifact.candidates) == 2 and result.passed
    # fuse runs on the export, before onnxsim folds the attention out of the optimizer's
    # patterns: the fused candidate holds Attention nodes
    assert fuse.settings["fused"].get("Attention") == 2, fuse.settings["fused"]
    assert [c.name.split(" > ")[:2] for c in artifact.candidates] == [
        ["torchscript"], ["torchscript", "fuse"]], [c.name for c in artifact.candidates]
