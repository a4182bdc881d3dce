"""Deployment targets: several in one run from one export, `auto`, the config file and
its errors, and execution providers that are missing or fall back."""

from __future__ import annotations

import json
import re

import pytest

from onnxport.errors import ExitCode

from conftest import assert_untouched, factory

AUTOPILOT = factory("autopilot_torch")


def test_one_run_writes_one_verified_artifact_per_target(cli, tmp_path):
    out = tmp_path / "multi"
    result = cli("convert", AUTOPILOT, "-o", out, "--target", "cpu", "--target", "rpi4",
                 "--target", "x86-avx2", "--target", "cuda", "--latency-runs", "0")
    assert result.code == 0, result.err
    report = json.loads((out / "report.json").read_text())
    assert set(report["targets"]) == {"cpu", "rpi4", "x86-avx2", "cuda"}
    assert report["status"] == "passed"
    for name in report["targets"]:
        manifest = json.loads((out / name / "manifest.json").read_text())
        assert manifest["target"]["name"] == name and manifest["verification"]["passed"]
        # The search ships INT8 where it measured faster on this machine (a timing, so it
        # may go either way here); the shipped model then answers to the INT8 budget.
        int8 = [p for p in manifest["passes"] if p["name"] == "quantize" and p["status"] == "ok"]
        fp16 = [p for p in manifest["passes"] if p["name"] == "float16" and p["status"] == "ok"]
        if int8:
            assert name in ("rpi4", "x86-avx2") and "faster here than" in int8[0]["settings"]["chosen"]
            assert manifest["onnx"]["producer"].startswith("onnx.quantize")
        elif fp16:  # cuda's float16 candidate, timed on the CPU fallback here
            assert name == "cuda" and "faster here than" in fp16[0]["settings"]["chosen"]
            assert manifest["verification"]["max_abs"] <= 1e-2  # the float16 budget
        else:
            assert manifest["verification"]["max_abs"] <= 1e-5
    cuda = json.loads((out / "cuda" / "manifest.json").read_text())
    assert cuda["target"]["providers"] == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert cuda["target"]["ran_on"] == ["CPUExecutionProvider"]
    assert ("asked CUDAExecutionProvider, ran CPUExecutionProvider: CUDAExecutionProvider "
            "is not available in this onnxruntime build") in cuda["warnings"]
    assert "asked CUDAExecutionProvider, ran CPUExecutionProvider" in result.out
    for name in ("cpu", "rpi4", "x86-avx2", "cuda"):
        assert re.search(rf"^{name}\s+export\s+PASS", result.out, re.M), name


def test_tensorrt_falls_back_and_says_so(tmp_path):
    import onnxport

    result = onnxport.convert(factory("planner"), output=tmp_path / "trt",
                              targets=["tensorrt"], latency_runs=0)
    artifact = result.artifact("tensorrt")
    assert artifact.verification.providers == ["CPUExecutionProvider"]
    assert any(w.startswith("asked TensorrtExecutionProvider, ran CPUExecutionProvider")
               for w in artifact.warnings)


def test_auto_picks_from_this_cpu_and_records_why(tmp_path):
    import onnxport
    from onnxport_providers.cpu_features import pick_target

    expected, why = pick_target()
    result = onnxport.convert(AUTOPILOT, output=tmp_path / "auto", targets=["auto"],
                              latency_runs=0)
    (artifact,) = result.artifacts
    assert artifact.target.name == expected and artifact.requested == "auto"
    assert f"auto picked {expected}: {why}" in artifact.warnings
    manifest = json.loads((tmp_path / "auto" / expected / "manifest.json").read_text())
    assert manifest["target"]["requested"] == "auto"


@pytest.mark.parametrize("machine, flags, expected", [
    ("x86_64", {"avx2", "avx512f", "avx512_vnni"}, "x86-avx512-vnni"),
    ("x86_64", {"avx2", "fma"}, "x86-avx2"),
    ("x86_64", {"sse4_2"}, "cpu"),
    ("aarch64", {"asimd", "asimddp"}, "arm64"),
    ("riscv64", set(), "cpu"),
])
def test_cpu_feature_table(machine, flags, expected):
    from onnxport_providers.cpu_features import pick_target

    assert pick_target(machine, frozenset(flags))[0] == expected


@pytest.mark.parametrize("machine, flags, saturates", [
    ("x86_64", {"avx2", "fma"}, True),            # AMD Zen 1-3, Intel before Ice Lake
    ("x86_64", {"avx2", "avx512f"}, True),        # Skylake-X: AVX512 without VNNI
    ("x86_64", {"avx2", "avx512f", "avx512_vnni"}, False),
    ("x86_64", {"avx2", "avx_vnni"}, False),      # Alder Lake
    ("aarch64", {"asimd"}, False),
])
def test_u8s8_saturation_is_told_from_the_cpu_flags(machine, flags, saturates):
    from onnxport.flow.environment import u8s8_saturates_here

    assert u8s8_saturates_here(machine, frozenset(flags)) is saturates


def test_int8_measured_where_it_saturates_says_so(tmp_path):
    """8-bit weights (rpi4's) verified on this machine: the stage warns exactly when this
    CPU is one where onnxruntime's U8S8 kernels saturate; the cpu target's 7-bit weights
    never get the warning."""
    import onnxport
    from onnxport.flow.environment import cpu_flags, u8s8_saturates_here

    result = onnxport.convert(factory("planner"), output=tmp_path / "out",
                              targets=["rpi4", "cpu"], quantize="on", latency_runs=0)
    warned = {a.target.name: any("can saturate" in w for w in a.warnings)
              for a in result.artifacts}
    assert warned == {"rpi4": u8s8_saturates_here(), "cpu": False}
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    features = report["machine"]["cpu_features"]  # what decides it, in the report
    assert ("avx2" in features) == ("avx2" in cpu_flags())


def test_targets_command_lists_builtins_and_config(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "onnxport.toml").write_text(
        '[targets.edgebox]\nbase = "rpi4"\ndescription = "our gateway"\n'
        'tolerance = { atol = 2e-5 }\n[targets.edgebox.options.quantize]\nmode = "off"\n')
    result = cli("targets")
    assert result.code == 0, result.err
    for name in ("cpu", "arm64", "rpi4", "x86-avx2", "x86-avx512-vnni", "cuda", "tensorrt",
                 "auto", "edgebox"):
        assert f"\n{name} " in "\n" + result.out
    listing = {t["name"]: t for t in json.loads(cli("targets", "--json").out)["targets"]}
    edgebox = listing["edgebox"]
    assert edgebox["providers"] == ["XnnpackExecutionProvider", "CPUExecutionProvider"]
    assert edgebox["tolerance"]["atol"] == 2e-5 and edgebox["quantize"]["mode"] == "off"
    assert edgebox["plugin"].startswith("config ")


def test_a_config_target_converts_with_its_budget(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n[tool.onnxport.targets.strict]\nbase = "cpu"\n'
        'tolerance = { atol = 1e-6, rtol = 0.0 }\n')
    out = tmp_path / "out"
    assert cli("convert", AUTOPILOT, "-o", out, "--target", "strict",
               "--latency-runs", "0").code == 0
    manifest = json.loads((out / "strict" / "manifest.json").read_text())
    assert manifest["target"]["tolerance"]["atol"] == 1e-6
    outputs = manifest["verification"]["batches"][0]["outputs"]
    assert outputs[0]["tolerance"]["atol"] == 1e-6 and outputs[0]["tolerance"]["rtol"] == 0
    again = cli("verify", out, "--trust-code")  # held to the recorded 1e-6 budget again
    assert again.code == 0 and "strict: PASS" in again.out, again.out


CONFIG_ERRORS = {
    "unknown key": ('[targets.cpu]\nprovidrs = ["CPUExecutionProvider"]\n',
                    "onnxport.toml: unknown key targets.cpu.providrs"),
    "wrong type": ("[targets.cpu]\nopset_max = \"18\"\n",
                   "onnxport.toml: targets.cpu.opset_max must be a int, not str ('18')"),
    "unknown base": ('[targets.edge]\nbase = "rpi5"\n',
                     "onnxport.toml: targets.edge.base names unknown target 'rpi5'"),
    "unknown top key": ('[target.cpu]\nallow_fallback = true\n',
                        "onnxport.toml: unknown key 'target'"),
    "bad tolerance": ('[targets.cpu]\ntolerance = { atl = 1 }\n',
                      "onnxport.toml: unknown key targets.cpu.tolerance.atl"),
    "unknown pass": ('[targets.cpu]\npasses = ["simplfy"]\n',
                     "onnxport.toml: targets.cpu.passes names unknown pass 'simplfy'"),
    "bad level": ('[targets.cpu]\ngraph_optimization_level = "max"\n',
                  "graph_optimization_level must be one of disable, basic, extended, all"),
    "not toml": ("[targets.cpu\n", "onnxport.toml is not valid TOML"),
}


@pytest.mark.parametrize("case", list(CONFIG_ERRORS))
def test_config_errors_name_the_key_and_the_file(cli, tmp_path, monkeypatch, case):
    text, message = CONFIG_ERRORS[case]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "onnxport.toml").write_text(text)
    result = cli("convert", AUTOPILOT, "-o", tmp_path / "out")
    assert result.code == ExitCode.BAD_INPUT
    assert message in result.err and result.err.count("\n") == 1
    assert_untouched(tmp_path / "out")


PROVIDER_ERRORS = {
    "missing, no fallback": (
        '[targets.gpu-only]\nbase = "cuda"\nallow_fallback = false\n',
        "gpu-only", "target 'gpu-only' requires CUDAExecutionProvider, which this "
                    "onnxruntime build does not have"),
    "unknown provider": (
        '[targets.typo]\nproviders = ["CUDAExecutionProvder"]\n', "typo",
        "target 'typo' asks for execution provider 'CUDAExecutionProvder', which "
        "onnxruntime does not know"),
    # Under --exporter auto an exporter is refused only when none can meet the bounds.
    "opset bounds": (
        '[targets.old]\nopset_max = 6\n', "old",
        "opset bounds (18 to 6) leave no opset the dynamo exporter can produce"),
}


@pytest.mark.parametrize("case", list(PROVIDER_ERRORS))
def test_targets_that_cannot_be_met_are_refused(cli, tmp_path, monkeypatch, case):
    text, target, message = PROVIDER_ERRORS[case]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "onnxport.toml").write_text(text)
    result = cli("convert", AUTOPILOT, "-o", tmp_path / "out", "--target", target)
    assert result.code == ExitCode.BAD_INPUT
    assert message in result.err
    assert_untouched(tmp_path / "out")


def test_an_opset_bound_picks_an_opset_the_target_accepts(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "onnxport.toml").write_text('[targets.old]\nopset_max = 17\n')
    out = tmp_path / "out"
    assert cli("convert", AUTOPILOT, "-o", out, "--target", "old", "--exporter",
               "torchscript", "--latency-runs", "0").code == 0
    assert json.loads((out / "old" / "manifest.json").read_text())["onnx"]["opset"] == 17


def test_pass_options_are_parsed_and_checked():
    from onnxport.cli.parsing import parse_pass_options
    from onnxport.errors import BadInput
    from onnxport.flow.building import merge_pass_options

    parsed = parse_pass_options(["quantize.per_channel=true", "quantize.weight_type=QUInt8",
                                 "simplify.timeout=30"])
    assert merge_pass_options(parsed, "auto") == {
        "quantize": {"per_channel": True, "weight_type": "QUInt8", "mode": "auto"},
        "simplify": {"timeout": 30}}
    with pytest.raises(BadInput, match="is not PASS.KEY=VALUE"):
        parse_pass_options(["quantize=on"])
