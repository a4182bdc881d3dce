"""Passes run per target on a copy, each result verified against the source framework:
a good pass ships, an optional pass that breaks the model is rejected with a warning, a
required one fails the run."""

from __future__ import annotations

import json

import numpy as np
import pytest

import onnxport
from onnxport.errors import ExportFailed, VerificationFailed
from onnxport.host import PluginHost, hookimpl
from onnxport.records import Pass, PassOutcome, Target

from conftest import ROOT, assert_untouched

MODELS = ROOT / "tests" / "models.py"


def strip_metadata(context):
    """A real, useful pass: drop doc strings and per-node metadata (dynamo adds ~50 KB)."""
    import onnx

    model = onnx.load(str(context.input_path))
    removed = 0
    for node in model.graph.node:
        removed += len(node.metadata_props) + bool(node.doc_string)
        del node.metadata_props[:]
        node.doc_string = ""
    onnx.save(model, str(context.output_path))
    return PassOutcome(applied=True, path=context.output_path, settings={"removed": removed})


def perturb_weights(context):
    """A broken pass: scales every weight matrix, as a bad optimiser would."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(context.input_path))
    for index, init in enumerate(model.graph.initializer):
        array = numpy_helper.to_array(init)
        if array.ndim == 2:
            model.graph.initializer[index].CopyFrom(
                numpy_helper.from_array((array * 1.5).astype(array.dtype), init.name))
    onnx.save(model, str(context.output_path))
    return PassOutcome(applied=True, path=context.output_path)


def explode(context):
    raise RuntimeError("simplifier crashed")


class PassPlugin:
    def __init__(self, target_passes, optional=True):
        self.target_passes = target_passes
        self.optional = optional

    @hookimpl
    def onnxport_register_passes(self, register):
        register(Pass(name="strip-metadata", description="drop doc strings",
                      run=strip_metadata, optional=True))
        register(Pass(name="perturb", description="breaks the model", run=perturb_weights,
                      optional=self.optional))
        register(Pass(name="explode", description="raises", run=explode,
                      optional=self.optional))
        register(Pass(name="gpu-only", description="never here", run=explode,
                      applies=lambda target: "CUDAExecutionProvider" in target.providers))

    @hookimpl
    def onnxport_register_targets(self, register):
        register(Target(name="edge", description="test target with passes",
                        passes=tuple(self.target_passes)))


def _convert(tmp_path, passes, optional=True, **kwargs):
    host = PluginHost()
    with host.registered(PassPlugin(passes, optional), "passes"):
        return onnxport.convert(f"{MODELS}:two_heads", output=tmp_path / "out",
                                targets=["edge"], latency_runs=0, host=host,
                                exporter="dynamo", **kwargs)


def test_a_good_pass_ships_its_verified_model(tmp_path):
    result = _convert(tmp_path, ["strip-metadata", "gpu-only"])
    artifact = result.artifact("edge")
    assert [(s.stage, s.status) for s in artifact.stages] == [
        ("export", "ok"), ("strip-metadata", "ok"), ("gpu-only", "skipped")]
    stripped = artifact.stages[1]
    assert stripped.settings["removed"] > 0
    assert stripped.info.size_bytes < artifact.stages[0].info.size_bytes
    assert artifact.model_path.stat().st_size == stripped.info.size_bytes
    manifest = json.loads((tmp_path / "out" / "edge" / "manifest.json").read_text())
    assert [p["name"] for p in manifest["passes"]] == ["strip-metadata", "gpu-only"]
    assert manifest["passes"][1]["reason"] == "does not apply to edge"


def test_an_optional_pass_that_breaks_the_model_is_rejected(tmp_path):
    result = _convert(tmp_path, ["strip-metadata", "perturb", "explode"])
    artifact = result.artifact("edge")
    assert [s.status for s in artifact.stages] == ["ok", "ok", "rejected", "rejected"]
    assert "failed verification" in artifact.stages[2].reason
    assert "simplifier crashed" in artifact.stages[3].reason
    assert len(artifact.warnings) == 2 and "kept the previous model" in artifact.warnings[0]
    assert artifact.final.stage == "strip-metadata" and result.passed
    # The shipped model is the last good one: it matches the source.
    import onnxruntime as ort
    from models import TwoHeads
    import torch

    left = np.ones((1, 4), np.float32)
    right = np.ones((1, 5), np.float32)
    probs, _ = ort.InferenceSession(str(artifact.model_path)).run(
        None, {"left": left, "right": right})
    with torch.inference_mode():
        expected = TwoHeads()(torch.from_numpy(left), torch.from_numpy(right))[0].numpy()
    np.testing.assert_allclose(probs, expected, atol=1e-5)


def test_a_required_pass_that_breaks_the_model_fails_the_run(tmp_path):
    with pytest.raises(VerificationFailed, match="verification failed for target edge"):
        _convert(tmp_path, ["perturb"], optional=False)
    assert_untouched(tmp_path / "out")
    with pytest.raises(ExportFailed, match="pass 'explode' failed for target edge: raised "
                                           "RuntimeError: simplifier crashed"):
        _convert(tmp_path, ["explode"], optional=False)
    assert_untouched(tmp_path / "out")
