"""The TFLite backend: registered but off by default with its reason, refused until
enabled, and when enabled: a Dense+BatchNorm model converts and verifies through the
TFLite interpreter, an LSTM fails with the converter's own words, and a converter that
dies from a native crash is contained in its child process. `onnxport probe tflite`
reports what still fails here.

Real TensorFlow, the real TFLite converter and interpreter; each conversion in a child
process, as in production."""

from __future__ import annotations

import json

import pytest

from onnxport.cli import main
from onnxport.errors import ExitCode
from onnxport.host import PluginHost
from onnxport_tflite.probe import render

from conftest import ROOT, CliResult, assert_untouched

KERAS_MODELS = ROOT / "tests" / "keras_models.py"


def keras_factory(name: str) -> str:
    return f"{KERAS_MODELS}:{name}"


@pytest.fixture
def fresh_cli(capsys):
    """`onnxport ARGS` in this process with a host of its own, so that `--enable tflite`
    does not stay on in the process-wide host for later tests."""

    def run(*args: str) -> CliResult:
        code = main([str(a) for a in args], host=PluginHost())
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def test_plugins_shows_tflite_disabled_with_its_reason_on_one_line(fresh_cli):
    listing = fresh_cli("plugins")
    assert listing.code == 0
    rows = {tuple(line.split()[:2]): line for line in listing.out.splitlines()
            if line.split()[:1] in (["backend"], ["runner"])}
    for kind in ("backend", "runner"):
        row = rows[(kind, "tflite")]
        assert "DISABLED: off by default" in row
        for needed in ("keras-team/keras#19108", "TensorListReserve", "LiteRT",
                       "--enable tflite", "ONNXPORT_ENABLE=tflite",
                       "onnxport probe tflite"):
            assert needed in row, needed
    plugin_row = next(line for line in listing.out.splitlines()
                      if line.split()[:1] == ["tflite"])
    assert "DISABLED" in plugin_row and "register_commands" in plugin_row
    data = json.loads(fresh_cli("plugins", "--json").out)
    backend = next(b for b in data["backends"] if b["name"] == "tflite")
    assert not backend["enabled"] and "keras-team/keras#19108" in backend["reason"]
    assert "\n" not in backend["reason"]


def test_tflite_is_refused_until_enabled(fresh_cli, tmp_path):
    out = tmp_path / "out"
    result = fresh_cli("convert", keras_factory("dense_bn"), "--backend", "tflite",
                       "-o", out)
    assert result.code == ExitCode.BAD_INPUT
    assert result.err.startswith("onnxport: error: backend 'tflite' is disabled: off by "
                                 "default")
    assert result.err.rstrip().endswith(
        "enable with --enable tflite or ONNXPORT_ENABLE=tflite")
    assert result.err.count("--enable tflite") == 1  # said once, not repeated as a hint
    assert result.err.count("\n") == 1
    assert_untouched(out)


@pytest.mark.parametrize("name, inputs, outputs", [
    ("dense_bn", ["features"], ["logits"]),
    # outputs in the model's order (zeta before alpha), not TFLite's sorted signature
    ("functional_dict", ["image", "meta"], ["zeta", "alpha"]),
])
def test_enabled_tflite_converts_and_verifies(fresh_cli, tmp_path, name, inputs, outputs):
    out = tmp_path / name
    result = fresh_cli("convert", keras_factory(name), "--backend", "tflite", "--enable",
                       "tflite", "-o", out, "--latency-runs", "3")
    assert result.code == 0, result.err
    assert "PASS" in result.out
    manifest = json.loads((out / "cpu" / "manifest.json").read_text())
    model = out / "cpu" / manifest["model"]
    assert model.suffix == ".tflite" and model.read_bytes()[4:8] == b"TFL3"
    assert sorted(p.name for p in (out / "cpu").iterdir()) == sorted(
        ["manifest.json", model.name])
    assert manifest.get("model_format", manifest["format"]) == "tflite"
    assert manifest["runner"] == "tflite"
    assert manifest["source"]["backend"] == "tflite"
    assert manifest["interface"]["inputs"] == inputs
    assert manifest["interface"]["outputs"] == outputs
    verification = manifest["verification"]
    assert verification["passed"]
    assert [b["label"] for b in verification["batches"]] == ["batch 1", "batch 3"]
    assert verification["max_abs"] <= 1e-5
    checks = {c["name"]: c["detail"] for c in verification["checks"]}
    assert checks["names"] == f"inputs {inputs}, outputs {outputs}"
    assert "interpreter" in checks["session"]
    # `onnxport verify` re-runs it, with the tflite runner enabled the same way
    again = main(["verify", str(out), "--trust-code"], host=PluginHost(enable={"tflite"}))
    assert again == 0


def test_an_lstm_fails_with_the_converters_words_and_the_process_goes_on(fresh_cli,
                                                                        tmp_path):
    out = tmp_path / "lstm"
    result = fresh_cli("convert", keras_factory("lstm"), "--backend", "tflite",
                       "--enable", "tflite", "-o", out)
    assert result.code == ExitCode.EXPORT_FAILED, result.err
    assert result.err.startswith("onnxport: error: the TFLite converter failed: "
                                 "'tf.TensorListReserve' op requires element_shape to be "
                                 "static")
    assert "convert to ONNX instead (drop --backend tflite)" in result.err
    assert result.err.count("\n") == 1 and "Traceback" not in result.err
    assert_untouched(out)
    # this process is fine, and the advice works: the same model through tf2onnx
    onnx = fresh_cli("convert", keras_factory("lstm"), "-o", tmp_path / "onnx",
                     "--latency-runs", "0")
    assert onnx.code == 0, onnx.err


def test_a_converter_crash_is_contained_in_its_child_process(fresh_cli, tmp_path):
    out = tmp_path / "crash"
    result = fresh_cli("convert", keras_factory("converter_crash"), "--backend", "tflite",
                       "--enable", "tflite", "-o", out)
    assert result.code == ExitCode.EXPORT_FAILED, result.err
    assert result.err.startswith("onnxport: error: the TFLite converter crashed (signal ")
    assert "SIGSEGV" in result.err or "SIGABRT" in result.err
    assert "Fatal Python error" in result.err  # the tail of the child's stderr
    assert "onnxport itself is unaffected" in result.err
    assert result.err.count("\n") == 1
    assert_untouched(out)


def test_opset_does_not_apply_to_tflite(fresh_cli, tmp_path):
    out = tmp_path / "out"
    result = fresh_cli("convert", keras_factory("dense_bn"), "--backend", "tflite",
                       "--enable", "tflite", "--opset", "17", "-o", out)
    assert result.code == ExitCode.BAD_INPUT
    assert "--opset does not apply to the tflite backend" in result.err
    assert_untouched(out)


def test_probe_tflite_reports_what_still_fails_here(fresh_cli):
    result = fresh_cli("probe", "tflite", "--json")
    assert result.code == 0, result.err
    findings = json.loads(result.out)
    probes = {p["case"]: p for p in findings["probes"]}
    assert set(probes) == {"dense_bn", "dense_bn_saved_model", "lstm"}
    assert all(p["still_occurs"] in ("yes", "no", "yes (silently)", "unknown")
               for p in probes.values())
    assert "keras-team/keras#19108" in probes["dense_bn"]["failure"]
    # what this environment (TF 2.21) shows: the LSTM still fails on TensorListReserve
    assert probes["lstm"]["still_occurs"] == "yes"
    assert "TensorListReserve" in probes["lstm"]["detail"]
    assert findings["deprecation"]["tf_lite_interpreter_warns"] in (True, False)
    table = render(findings)  # what `onnxport probe tflite` prints without --json
    assert "still occurs?" in table and "tf.lite deprecated in favour of LiteRT" in table
    assert "TensorListReserve" in table
