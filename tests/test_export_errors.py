"""Export failures come out as one line that says what is wrong, where in the model,
and what to do: the common cases of the planner course module (shared/seeds/002), each
with a real model that fails that way (tests/broken_models.py). `--debug` still shows
the exporter's original error."""

from __future__ import annotations

import pytest

import onnxport
from onnxport.errors import ExitCode, ExportFailed

from conftest import ROOT, assert_untouched

BROKEN = ROOT / "tests" / "broken_models.py"
MODELS = ROOT / "tests" / "models.py"


def export_error(tmp_path, factory: str, **options) -> str:
    with pytest.raises(ExportFailed) as failure:
        onnxport.convert(f"{BROKEN}:{factory}", output=tmp_path / "out", latency_runs=0,
                         **options)
    assert_untouched(tmp_path / "out")
    return failure.value.one_line()


# ----------------------------------------------------------------------------- operators


def test_an_operator_no_exporter_has_is_named_with_its_line(tmp_path):
    message = export_error(tmp_path, "erfinv")
    assert message.startswith("the operator aten::erfinv (prims::erf_inv after "
                              "decomposition) at broken_models.py:")
    assert "`return torch.special.erfinv(p.clamp(-0.99, 0.99)) * 2`" in message
    assert "neither exporter has it at any opset" in message
    assert "replace it in the model" in message
    assert "This is step" not in message and "\x1b[" not in message  # torch's boilerplate


def test_an_operator_the_other_exporter_has_says_which(tmp_path):
    message = export_error(tmp_path, "randomised_relu", exporter="dynamo")
    assert "aten::rrelu_with_noise_functional" in message
    assert "(via `return F.rrelu(" in message  # the torch call the model made
    assert "the TorchScript exporter has aten::rrelu (from opset 9): convert with " \
           "--exporter torchscript" in message
    converted = onnxport.convert(f"{BROKEN}:randomised_relu", output=tmp_path / "ts",
                                 exporter="torchscript", latency_runs=0)
    assert converted.passed  # the advice works
    message = export_error(tmp_path, "erfc", exporter="torchscript")
    assert "aten::erfc has no ONNX translation in the torchscript exporter at opset" \
        in message
    assert "the dynamo exporter has it: convert with --exporter dynamo" in message


def test_exporter_auto_falls_back_to_the_route_that_works_and_says_so(cli, tmp_path):
    """The default route (dynamo) has no translation for RReLU; with the default
    --exporter auto the TorchScript route ships, and the report says why."""
    out = tmp_path / "out"
    done = cli("convert", f"{BROKEN}:randomised_relu", "-o", out, "--latency-runs", "0")
    assert done.code == 0, done.err
    assert "export: the dynamo exporter failed (the operator aten::rrelu" in \
        " ".join(done.out.split())
    import json

    report = json.loads((out / "report.json").read_text())
    assert report["export"]["exporter"] == "torchscript"
    routes = report["export"]["details"]["routes"]
    assert [r["exporter"] for r in routes] == ["dynamo", "torchscript"]
    assert routes[0]["failed"] == "export" and routes[1]["shipped"] == "yes"
    manifest = json.loads((out / "cpu" / "manifest.json").read_text())
    assert manifest["source"]["exporter"] == "torchscript"
    assert manifest["source"]["routes"][0]["exporter"] == "dynamo"


def test_an_operator_a_later_opset_has_names_that_opset(cli, tmp_path):
    done = cli("convert", f"{BROKEN}:causal_mask", "-o", tmp_path / "out",
               "--exporter", "torchscript", "--opset", "13")
    assert done.code == ExitCode.EXPORT_FAILED
    assert "onnxport: error: the operator aten::triu cannot be exported at opset 13: " \
           "ONNX has it from opset 14: convert with --opset 14 or later" in done.err
    assert cli("convert", f"{BROKEN}:causal_mask", "-o", tmp_path / "ok", "--exporter",
               "torchscript", "--opset", "14", "--latency-runs", "0").code == 0


# ----------------------------------------------------------------------------- control flow


def test_data_dependent_control_flow_says_where_and_what_to_write(cli, tmp_path):
    done = cli("convert", f"{BROKEN}:course_broken", "-o", tmp_path / "out")
    assert done.code == ExitCode.EXPORT_FAILED
    line = done.err.strip().splitlines()[-1]
    assert line.startswith("onnxport: error: the model has data-dependent control flow at "
                           "broken_models.py:")
    assert "in forward: `if x.sum() > 0:`" in line
    assert "torch.where(condition, a, b)" in line
    assert "GuardOnDataDependentSymNode" not in line

    debug = cli("--debug", "convert", f"{BROKEN}:course_broken", "-o", tmp_path / "out")
    assert debug.code == ExitCode.EXPORT_FAILED
    assert "GuardOnDataDependentSymNode" in debug.err  # the exporter's own error, in full

    loop = export_error(tmp_path, "doubling")
    assert "`while x.abs().sum() < 100:`" in loop
    assert "run the loop a fixed number of times" in loop


# ----------------------------------------------------------------------------- batch


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_a_batch_size_fixed_inside_the_model_is_named(tmp_path, exporter):
    message = export_error(tmp_path, "stateful_lstm", exporter=exporter)
    assert message.startswith("the model fixes the batch size at broken_models.py:")
    assert "`out, _ = self.lstm(sensors, (self.h0, self.c0))`" in message
    assert "Expected hidden[0] size" in message
    assert "torch.zeros(1, x.shape[0], hidden)" in message and "--static-batch" in message
    static = onnxport.convert(f"{BROKEN}:stateful_lstm", output=tmp_path / "static",
                              exporter=exporter, dynamic_batch=False, latency_runs=0)
    assert static.passed  # the advice works


# ----------------------------------------------------------------------------- names


def test_input_names_deployment_code_cannot_tell_apart(cli, tmp_path):
    done = cli("convert", f"{BROKEN}:two_inputs", "-o", tmp_path / "out",
               "--input-names", "costmap_input,costmap_input")
    assert done.code == ExitCode.EXPORT_FAILED
    assert "two ONNX inputs would both be named 'costmap_input'" in done.err
    assert "--input-names A,B" in done.err
    outputs = cli("convert", f"{MODELS}:two_heads", "-o", tmp_path / "out2",
                  "--output-names", "plan,plan")
    assert outputs.code == ExitCode.EXPORT_FAILED
    assert "two ONNX outputs would both be named 'plan'" in outputs.err
    assert "--output-names A,B" in outputs.err
    named = cli("convert", f"{BROKEN}:two_inputs", "-o", tmp_path / "ok", "--input-names",
                "costmap_input,robot_state_input", "--latency-runs", "0")
    assert named.code == 0
