"""The simplify pass (onnxsim in a child process): real onnxsim, real models.

What onnxsim really gets wrong here: its `eliminate_nop_monotone_argmax` optimizer drops
a Softmax in front of an ArgMax. That is only equivalent while the softmax does not tie;
on a classifier whose probabilities saturate it changes the predicted class. With its
own check on (simplify.check_n) onnxsim notices and returns ok=False; with the default
(no check) it returns ok=True and a wrong model, which the core's verification against
PyTorch rejects. Either way the conversion succeeds with the previous model and says why.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import onnxport
from onnxport.errors import BadInput
from onnxport.host import PluginHost, hookimpl
from onnxport.artifact.modelinfo import read_model_info
from onnxport.records import PassContext, Target

from conftest import factory


class SaturatedClassifier(nn.Module):
    """argmax(softmax(logits)) with logits so small that the softmax ties."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return torch.softmax(self.fc(x) * 1e-9, dim=-1).argmax(-1)


class SimplifyTargets:
    """A target whose simplify pass also runs onnxsim's own check."""

    @hookimpl
    def onnxport_register_targets(self, register):
        register(Target(name="checked-simplify", description="simplify with check_n = 2",
                        passes=("simplify",), options={"simplify": {"check_n": 2}}))


def _stage(artifact, name):
    return next(s for s in artifact.stages if s.stage == name)


def test_a_model_onnxsim_cannot_simplify_still_converts_with_the_reason(tmp_path):
    host = PluginHost()
    with host.registered(SimplifyTargets(), "simplify-targets"):
        result = onnxport.convert(SaturatedClassifier(), torch.randn(2, 8),
                                  output=tmp_path / "out", output_names=["label"],
                                  targets=["cpu", "checked-simplify"], latency_runs=0,
                                  host=host)
    assert result.passed
    # Default options: onnxsim says ok, but its model disagrees with PyTorch.
    cpu = result.artifact("cpu")
    rejected = _stage(cpu, "simplify")
    assert rejected.status == "rejected"
    assert rejected.reason.startswith("its model failed verification (batch 1 label:")
    assert rejected.settings["nodes_before"] == 4 and rejected.settings["nodes_after"] == 3
    assert any(w.startswith("simplify: its model failed verification") for w in cpu.warnings)
    # With onnxsim's own check: ok=False, the pass is skipped with onnxsim's words.
    checked = _stage(result.artifact("checked-simplify"), "simplify")
    assert checked.status == "skipped"
    assert checked.reason.startswith("onnxsim could not check its result (ok=False)")
    assert "Tensor label changes after optimization" in checked.reason
    # The shipped models are the exported ones, verified, and the report says why.
    for artifact in result.artifacts:
        assert artifact.final.stage == "export" and artifact.passed
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    reasons = {name: [s["reason"] for s in t["stages"] if s["stage"] == "simplify"][0]
               for name, t in report["targets"].items()}
    assert reasons == {"cpu": rejected.reason, "checked-simplify": checked.reason}
    manifest = json.loads((tmp_path / "out" / "cpu" / "manifest.json").read_text())
    simplify = next(p for p in manifest["passes"] if p["name"] == "simplify")
    assert simplify["status"] == "rejected"


def test_simplify_keeps_the_batch_dynamic(tmp_path):
    result = onnxport.convert(factory("autopilot_torch"), output=tmp_path / "out",
                              targets=["cpu"], latency_runs=0)
    simplified = _stage(result.artifact("cpu"), "simplify")
    assert simplified.status == "ok", simplified.reason
    assert simplified.settings["nodes_after"] < simplified.settings["nodes_before"]
    assert simplified.settings["onnxsim"]
    # The core verified the simplified model at batch 1 and 3 ...
    labels = [b.label for b in simplified.verification.batches]
    assert labels == ["batch 1", "batch 3"] and simplified.verification.passed
    # ... and it is the shipped model, with the exporter's dimension names.
    info = read_model_info(result.model_path)
    assert info.inputs[0].shape == ["batch", 20, 25]
    assert info.outputs[0].shape == ["batch", 1]
    assert simplified.info.node_count == simplified.settings["nodes_after"]


class Pooled(nn.Module):
    """Two outputs; the second has no batch axis, but the TorchScript exporter labels
    axis 0 of every output 'batch' (dynamic_axes), and onnxsim infers it is 8."""

    def forward(self, x):
        return x * 2, x.sum(0)


def test_onnxsim_fixing_a_dynamic_axis_is_not_applied(tmp_path):
    result = onnxport.convert(Pooled(), torch.randn(2, 8), output=tmp_path / "out",
                              output_names=["y", "total"], exporter="torchscript",
                              targets=["cpu"], latency_runs=0)
    stage = _stage(result.artifact("cpu"), "simplify")
    assert stage.status == "skipped"
    assert stage.reason == (
        "onnxsim changed the model's interface: it fixed axis 0 of output 'total' at 8 "
        "(it was the dynamic 'batch'); dynamic axes must stay dynamic")
    assert result.passed and result.artifact("cpu").final.stage == "export"


@pytest.fixture(scope="module")
def exported_mlp(tmp_path_factory):
    """An ONNX file to hand to the pass directly (TorchScript exporter: fast)."""
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2)).eval()
    torch.onnx.export(model, (torch.randn(2, 8),), str(path), dynamo=False,
                      input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    return path


def _context(tmp_path, model, **options):
    from onnxport_providers.targets import BUILTIN_TARGETS

    cpu = next(t for t in BUILTIN_TARGETS if t.name == "cpu")
    return PassContext(input_path=model, output_path=tmp_path / "simplified.onnx",
                       target=cpu, options=options, work_dir=tmp_path)


def test_a_graph_onnxsim_only_annotates_is_not_a_simplified_model(tmp_path, exported_mlp):
    """Gemm, Relu, Gemm: onnxsim has nothing to fold and returns the same nodes plus
    inferred shapes, a larger file. The pass says so and the exported model goes on."""
    import onnx

    from onnxport_onnxsim.simplifying import same_graph, simplify

    outcome = simplify(_context(tmp_path, exported_mlp))
    assert not outcome.applied and outcome.warnings == []
    assert outcome.reason == ("onnxsim found nothing to simplify (3 nodes, unchanged): "
                              "the previous model goes on")
    assert outcome.settings["nodes_before"] == outcome.settings["nodes_after"] == 3
    # ... and a graph it did change is not "the same": one node fewer.
    original = onnx.load(str(exported_mlp))
    changed = onnx.load(str(exported_mlp))
    del changed.graph.node[1]
    assert same_graph(original, original) and not same_graph(original, changed)


def test_a_hung_simplifier_is_stopped_at_its_timeout(tmp_path, exported_mlp):
    from onnxport_onnxsim.simplifying import simplify

    outcome = simplify(_context(tmp_path, exported_mlp, timeout=0.05))
    assert not outcome.applied
    assert outcome.reason == ("onnxsim did not finish within 0.05 s and was stopped "
                              "(raise simplify.timeout for large models)")
    assert not (tmp_path / "simplified.onnx").exists()


def test_a_failing_child_is_a_reason_not_a_dead_process(tmp_path, exported_mlp):
    from onnxport_onnxsim.simplifying import simplify

    # 64 MB of address space: the child cannot even import numpy and onnx, and ends
    # with an ImportError, a MemoryError or an abort, depending on where it ran out.
    outcome = simplify(_context(tmp_path, exported_mlp, memory_limit_mb=64))
    assert not outcome.applied
    assert outcome.reason.startswith(("onnxsim failed: ", "onnxsim crashed ("))
    assert "Traceback" not in outcome.reason and len(outcome.reason) <= 420
    assert outcome.warnings == [f"simplify: {outcome.reason}"]


def test_the_child_reports_a_native_crash_with_the_signal(tmp_path):
    """A real segfault in a real child process, read the way the pass reads onnxsim's."""
    import subprocess
    import sys

    from onnxport.child_tool import crash_reason

    done = subprocess.run([sys.executable, "-X", "faulthandler", "-c",
                           "import ctypes; ctypes.string_at(0)"],
                          capture_output=True, text=True)
    assert done.returncode < 0
    reason = crash_reason("onnxsim", done.returncode, done.stderr)
    assert reason.startswith("onnxsim crashed (SIGSEGV): ")
    assert "Fatal Python error: Segmentation fault" in reason


def test_simplify_options_are_checked_by_name_and_type(tmp_path, exported_mlp):
    from onnxport_onnxsim.simplifying import simplify

    with pytest.raises(BadInput, match=r"target 'cpu': unknown option simplify.fuse_bn"):
        simplify(_context(tmp_path, exported_mlp, fuse_bn=False))
    with pytest.raises(BadInput, match=r"simplify.timeout must be a number"):
        simplify(_context(tmp_path, exported_mlp, timeout="5"))


def test_the_plugin_module_imports_nothing_heavy():
    import subprocess
    import sys

    code = ("import sys, onnxport_onnxsim, onnxport_quantize\n"
            "heavy = [m for m in ('onnx', 'onnxruntime', 'onnxsim', 'torch') "
            "if m in sys.modules]\n"
            "print(heavy)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "[]", done.stderr
