"""Converting real PyTorch models end to end: CLI and Python API, both exporters,
artifacts on disk, and the verification stage catching real export faults."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import onnxport
from onnxport.errors import ExitCode, ExportFailed, VerificationFailed

from conftest import ROOT, assert_untouched, factory, zoo_module

MODELS = ROOT / "tests" / "models.py"

ZOO_INTERFACES = {
    "autopilot_torch": (["sensors"], ["rudder"]),
    "planner": (["costmap_input", "robot_state_input", "goal_relative_input",
                 "costmap_metadata_input"], ["output"]),
    "wakeword": (["input_values"], ["logits"]),
    "localization": (["mel_spectrogram"], ["positions", "uncertainties"]),
}


def check_artifact(out: Path, inputs: list[str], outputs: list[str]) -> dict:
    """The artifact is complete, self-contained, verified at two batch sizes."""
    from onnxport.artifact.reading import sha256_of
    from onnxport.artifact.modelinfo import read_model_info

    report = json.loads((out / "report.json").read_text())
    manifest = json.loads((out / "cpu" / "manifest.json").read_text())
    assert report["status"] == "passed"
    assert sorted(p.name for p in (out / "cpu").iterdir()) == sorted(
        ["manifest.json", manifest["model"]]), "no stray side files"
    model = out / "cpu" / manifest["model"]
    (entry,) = manifest["files"]
    assert entry["sha256"] == sha256_of(model) and entry["bytes"] == model.stat().st_size
    info = read_model_info(model)
    assert [t.name for t in info.inputs] == inputs
    assert [t.name for t in info.outputs] == outputs
    assert all(isinstance(t.shape[0], str) for t in info.inputs + info.outputs)
    verification = manifest["verification"]
    assert verification["passed"]
    assert [b["label"] for b in verification["batches"]] == ["batch 1", "batch 3"]
    assert verification["max_abs"] <= 1e-5
    for key in ("opset", "ir_version", "producer", "parameter_count"):
        assert manifest["onnx"][key]
    assert manifest["versions"]["torch"] and manifest["versions"]["onnxruntime"]
    assert manifest["made_by"]
    return manifest


@pytest.mark.parametrize("name", list(ZOO_INTERFACES))
def test_reference_model_converts_with_dynamo(cli, tmp_path, name):
    out = tmp_path / name
    result = cli("convert", factory(name), "-o", out, "--latency-runs", "3")
    assert result.code == 0, result.err
    assert "PASS" in result.out
    manifest = check_artifact(out, *ZOO_INTERFACES[name])
    assert manifest["source"]["exporter"] == "dynamo"


def test_autopilot_with_the_torchscript_exporter_at_opset_14(cli, tmp_path):
    out = tmp_path / "ts"
    result = cli("convert", factory("autopilot_torch"), "-o", out, "--exporter",
                 "torchscript", "--opset", "14", "--latency-runs", "3")
    assert result.code == 0, result.err
    manifest = check_artifact(out, ["sensors"], ["rudder"])
    assert manifest["onnx"]["opset"] == 14 and manifest["source"]["exporter"] == "torchscript"
    inspected = json.loads(cli("inspect", out / "cpu" / manifest["model"], "--json").out)["models"][0]
    assert inspected["op_histogram"].get("LSTM") == 2


@pytest.mark.slow
@pytest.mark.parametrize("name", ["planner", "wakeword", "localization"])
def test_reference_model_converts_with_torchscript(cli, tmp_path, name):
    out = tmp_path / name
    assert cli("convert", factory(name), "-o", out, "--exporter", "torchscript",
               "--latency-runs", "3").code == 0
    check_artifact(out, *ZOO_INTERFACES[name])


def test_python_api_takes_names_from_the_example_dict(tmp_path):
    import torch

    from models import TwoHeads

    model = TwoHeads()
    result = onnxport.convert(model, {"right": torch.randn(1, 5), "left": torch.randn(1, 4)},
                              output=tmp_path / "api", output_names=["probs", "score"],
                              latency_runs=0)
    assert result.passed and result.name == "twoheads"
    assert result.loaded.input_names == ["left", "right"]  # forward()'s order
    assert result.loaded.output_names == ["probs", "score"]
    check_artifact(tmp_path / "api", ["left", "right"], ["probs", "score"])
    assert "onnxport.convert(" in result.artifacts[0].manifest["made_by"]["call"]


def test_python_api_positional_inputs_and_renames(tmp_path):
    import torch

    from models import TwoHeads

    result = onnxport.convert(TwoHeads(), (torch.randn(2, 4), torch.randn(2, 5)),
                              output=tmp_path / "api", input_names=["l", "r"],
                              exporter="torchscript", latency_runs=0)
    assert result.loaded.input_names == ["l", "r"]
    assert result.loaded.output_names == ["output_0", "output_1"]
    assert result.passed


def test_checkpoint_weights_are_really_applied(cli, tmp_path):
    import onnxruntime as ort
    import torch

    module = zoo_module("autopilot_torch")
    trained = module.make_model()
    with torch.no_grad():
        for parameter in trained.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    checkpoint = tmp_path / "autopilot.pt"
    torch.save({"epoch": 7, "model_state_dict": trained.state_dict()}, checkpoint)
    out = tmp_path / "from-ckpt"
    assert cli("convert", factory("autopilot_torch"), "--weights", checkpoint, "-o", out,
               "--latency-runs", "0").code == 0
    manifest = check_artifact(out, ["sensors"], ["rudder"])
    assert manifest["source"]["weights"]["path"] == str(checkpoint)

    sensors = np.random.default_rng(0).uniform(-1, 1, (4, 20, 25)).astype(np.float32)
    (onnx_rudder,) = ort.InferenceSession(str(out / "cpu" / manifest["model"])).run(
        None, {"sensors": sensors})
    with torch.inference_mode():
        expected = trained(torch.from_numpy(sensors)).numpy()
        untrained = module.make_model()(torch.from_numpy(sensors)).numpy()
    np.testing.assert_allclose(onnx_rudder, expected, atol=1e-5)
    assert np.abs(onnx_rudder - untrained).max() > 1e-3


def test_a_wrong_export_fails_verification_and_writes_nothing(cli, tmp_path):
    out = tmp_path / "branchy"
    result = cli("convert", f"{MODELS}:branchy", "-o", out, "--exporter", "torchscript")
    assert result.code == ExitCode.VERIFICATION_FAILED
    assert "verification failed for target cpu" in result.err
    assert "values differ by more than" in result.err
    assert "FAIL" in result.out  # the table still shows the figures
    assert_untouched(out)

    kept = cli("convert", f"{MODELS}:branchy", "-o", out, "--exporter", "torchscript",
               "--keep-failed")
    assert kept.code == ExitCode.VERIFICATION_FAILED
    assert_untouched(out)
    report = json.loads((tmp_path / "branchy.failed" / "report.json").read_text())
    assert report["status"] == "failed"


def test_data_dependent_control_flow_is_named_by_the_dynamo_exporter(tmp_path):
    with pytest.raises(ExportFailed, match="data-dependent control flow"):
        onnxport.convert(f"{MODELS}:branchy", output=tmp_path / "out")
    assert_untouched(tmp_path / "out")


def test_a_frozen_batch_is_caught(tmp_path):
    # TorchScript declares the axis dynamic but bakes the example's batch into Reshape:
    # only running at another batch size shows it.
    with pytest.raises(VerificationFailed) as failure:
        onnxport.convert(f"{MODELS}:fixed_batch", output=tmp_path / "ts",
                         exporter="torchscript", latency_runs=0)
    verification = failure.value.result.artifacts[0].verification
    assert "batch 1 total: shape [2, 1] where the source gives [1, 1]" in verification.problem
    # dynamo specialises the batch; the structural check names the frozen tensors.
    with pytest.raises(VerificationFailed, match="froze the batch dimension of x"):
        onnxport.convert(f"{MODELS}:fixed_batch", output=tmp_path / "dynamo",
                         exporter="dynamo")
    # --exporter auto tries both; both fail, and the report says what dynamo did too
    with pytest.raises(VerificationFailed) as both:
        onnxport.convert(f"{MODELS}:fixed_batch", output=tmp_path / "auto", latency_runs=0)
    warnings = both.value.result.artifacts[0].warnings
    assert any("dynamo exporter made a model that failed verification" in w
               for w in warnings), warnings
    static = onnxport.convert(f"{MODELS}:fixed_batch", output=tmp_path / "static",
                              dynamic_batch=False, latency_runs=0)
    assert static.passed
    assert [b.label for b in static.artifacts[0].verification.batches] == ["batch 2"]
    assert_untouched(tmp_path / "ts")
    assert_untouched(tmp_path / "dynamo")


def test_user_data_tolerances_and_ranges_are_applied_and_recorded(cli, tmp_path):
    data = tmp_path / "inputs.npz"
    rng = np.random.default_rng(3)
    np.savez(data, left=rng.normal(size=(5, 4)).astype(np.float32),
             right=rng.normal(size=(5, 5)).astype(np.float32))
    out = tmp_path / "out"
    result = cli("convert", f"{MODELS}:two_heads", "-o", out, "--data", data,
                 "--tolerance", "score:atol=1e-3,rtol=0", "--latency-runs", "0")
    assert result.code == 0, result.err
    manifest = json.loads((out / "cpu" / "manifest.json").read_text())
    batches = manifest["verification"]["batches"]
    assert [b["label"] for b in batches] == ["data", "data[:1]"]
    assert batches[0]["inputs"]["left"]["shape"] == [5, 4]
    tolerances = {o["name"]: o["tolerance"]["atol"] for o in batches[0]["outputs"]}
    assert tolerances == {"probs": 1e-5, "score": 1e-3}
    report = json.loads((out / "report.json").read_text())
    assert report["verification_settings"]["data"] == str(data)


def test_inspect_prints_what_the_course_module_asks_for(cli, tmp_path):
    out = tmp_path / "planner"
    assert cli("convert", factory("planner"), "-o", out, "--latency-runs", "0").code == 0
    text = cli("inspect", out)
    assert text.code == 0
    for expected in ("costmap_input: float32[batch, 1, 50, 50]", "output: float32[batch, 60]",
                     "opset", "ir version", "producer", "pytorch", "Conv", "parameters"):
        assert expected in text.out
    data = json.loads(cli("inspect", out / "cpu" / "planner.onnx", "--json").out)["models"][0]
    assert data["opset"] == 20 and data["op_histogram"]["Conv"] == 3
    assert data["size_bytes"] == (out / "cpu" / "planner.onnx").stat().st_size


def test_verify_reruns_against_the_named_source_and_catches_tampering(cli, tmp_path):
    out = tmp_path / "loc"
    assert cli("convert", factory("localization"), "-o", out, "--latency-runs", "0").code == 0
    again = cli("verify", out, "--source", factory("localization"))
    assert again.code == 0, again.err
    assert "cpu: PASS" in again.out and "positions" in again.out
    trusted = cli("verify", out, "--trust-code")  # the manifest's own source, opted in
    assert trusted.code == 0 and "cpu: PASS" in trusted.out
    model = out / "cpu" / "localization.onnx"
    original = model.read_bytes()
    flipped = bytearray(original)
    flipped[-100] ^= 0xFF
    model.write_bytes(bytes(flipped))
    tampered = cli("verify", out)
    assert tampered.code == ExitCode.VERIFICATION_FAILED
    assert "localization.onnx has sha256" in tampered.out
    model.write_bytes(original[:-10])
    truncated = cli("verify", out)
    assert truncated.code == ExitCode.VERIFICATION_FAILED
    assert "the manifest says" in truncated.out


def test_overwrite_replaces_an_existing_artifact(cli, tmp_path):
    out = tmp_path / "out"
    assert cli("convert", f"{MODELS}:two_heads", "-o", out, "--latency-runs", "0").code == 0
    (out / "stale.txt").write_text("from before")
    refused = cli("convert", f"{MODELS}:two_heads", "-o", out)
    assert refused.code == ExitCode.BAD_INPUT and "--overwrite" in refused.err
    assert (out / "stale.txt").exists()
    assert cli("convert", f"{MODELS}:two_heads", "-o", out, "--overwrite",
               "--latency-runs", "0").code == 0
    assert not (out / "stale.txt").exists() and (out / "report.json").exists()


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_external_data_is_listed_checked_and_moved_with_the_model(cli, tmp_path, exporter):
    out = tmp_path / exporter
    result = cli("convert", factory("planner"), "-o", out, "--external-data",
                 "--exporter", exporter, "--latency-runs", "0")
    assert result.code == 0, result.err
    manifest = json.loads((out / "cpu" / "manifest.json").read_text())
    listed = [f["path"] for f in manifest["files"]]
    assert listed == ["planner.onnx", "planner.onnx.data"]
    assert sorted(p.name for p in (out / "cpu").iterdir()) == sorted([*listed, "manifest.json"])
    assert (out / "cpu" / "planner.onnx.data").stat().st_size > 1_000_000
    checks = {c["name"]: c for c in manifest["verification"]["checks"]}
    assert checks["files"]["detail"] == "external data beside it: planner.onnx.data"
    assert cli("verify", out, "--trust-code").code == 0
