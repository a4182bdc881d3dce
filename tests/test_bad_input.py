"""Every bad input of the foundation issue: one clear line, its exit code, no traceback,
and nothing written where the artifact would have gone."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from onnxport.errors import ExitCode

from conftest import (ROOT, assert_untouched, factory, onnxport_without_frameworks,
                      run_process, zoo_module)

AUTOPILOT = factory("autopilot_torch")
MAKE_AUTOPILOT = factory("autopilot_torch", "make_model")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Real files of each broken kind, made with torch itself."""
    import torch

    root = tmp_path_factory.mktemp("bad")
    autopilot = zoo_module("autopilot_torch").make_model()
    torch.save(autopilot.state_dict(), root / "autopilot_sd.pt")
    data = (root / "autopilot_sd.pt").read_bytes()
    (root / "truncated.pt").write_bytes(data[: len(data) // 2])
    (root / "notes.pt").write_text("these are notes, not weights\n")
    (root / "notes.txt").write_text("not a model\n")
    torch.save(zoo_module("planner").make_model().state_dict(), root / "planner_sd.pt")
    torch.save(autopilot, root / "whole_model.pt")
    return root


CASES = {
    "missing path": (["convert", "{root}/nope.pt"], ExitCode.BAD_INPUT,
                     "nope.pt does not exist"),
    "not a model": (["convert", "{root}/notes.txt"], ExitCode.BAD_INPUT,
                    "no backend can load"),
    "garbage .pt": (["convert", "{root}/notes.pt"], ExitCode.BAD_INPUT,
                    "is not a readable PyTorch model file"),
    "truncated checkpoint": (["convert", AUTOPILOT, "--weights", "{root}/truncated.pt"],
                             ExitCode.BAD_INPUT,
                             "truncated.pt is not a readable PyTorch checkpoint"),
    "missing module": (["convert", "no_such_pkg.models:build"], ExitCode.BAD_INPUT,
                       "there is no module 'no_such_pkg.models'"),
    "missing function": (["convert", factory("autopilot_torch", "nope")],
                         ExitCode.BAD_INPUT, "has no function 'nope'"),
    "state_dict does not fit": (["convert", AUTOPILOT, "--weights", "{root}/planner_sd.pt"],
                                ExitCode.BAD_INPUT,
                                "does not fit Autopilot: missing lstm.weight_ih_l0"),
    "state_dict as the model": (["convert", "{root}/autopilot_sd.pt"], ExitCode.BAD_INPUT,
                                "holds a state_dict (weights only), not a model"),
    "pickle without opt-in": (["convert", "{root}/whole_model.pt"], ExitCode.BAD_INPUT,
                              "loading it would execute code from the file"),
    "wrong rank": (["convert", MAKE_AUTOPILOT, "--input", "sensors:2x20"],
                   ExitCode.BAD_INPUT, "Autopilot rejects the example inputs (sensors "
                                       "float32[2, 20])"),
    "wrong input name": (["convert", MAKE_AUTOPILOT, "--input", "sensor:2x20x25"],
                         ExitCode.BAD_INPUT,
                         "input 'sensor' is not an argument of Autopilot.forward(sensors)"),
    "too many output names": (["convert", AUTOPILOT, "--output-names", "a,b"],
                              ExitCode.BAD_INPUT, "2 output names given (a, b) but the "
                                                  "model returns 1 output"),
    "opset above the exporter": (["convert", AUTOPILOT, "--opset", "99"], ExitCode.BAD_INPUT,
                                 "opset 99 cannot be produced by the torch backend's "
                                 "dynamo exporter: choose an opset from 18 to 23"),
    "opset below dynamo": (["convert", AUTOPILOT, "--exporter", "dynamo", "--opset", "14"],
                           ExitCode.BAD_INPUT,
                           "--exporter torchscript for older opsets"),
    "unknown exporter": (["convert", AUTOPILOT, "--exporter", "fx"], ExitCode.BAD_INPUT,
                         "choose one of: dynamo, torchscript"),
    "unknown target": (["convert", AUTOPILOT, "--target", "toaster"], ExitCode.BAD_INPUT,
                       # installed plugins may add targets (onnxport-fp16: cuda-fp16)
                       "unknown target 'toaster': known targets: arm64, auto, cpu, cuda, "),
    "bad tolerance": (["convert", AUTOPILOT, "--tolerance", "rudder:atl=1"],
                      ExitCode.BAD_INPUT, "is not OUTPUT:atol=X,rtol=Y"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gets_one_clear_line(cli, files, tmp_path, case):
    args, code, message = CASES[case]
    out = tmp_path / "out"
    result = cli(*[a.format(root=files) for a in args], "-o", out)
    assert result.code == code, result.err
    assert message in result.err
    assert result.err.startswith("onnxport: error: ") and result.err.count("\n") == 1
    assert "Traceback" not in result.err
    assert_untouched(out)


def test_existing_artifact_is_refused_and_left_alone(cli, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text("{}")
    result = cli("convert", AUTOPILOT, "-o", out)
    assert result.code == ExitCode.BAD_INPUT
    assert "already holds an onnxport artifact" in result.err and "--overwrite" in result.err
    assert [p.name for p in out.iterdir()] == ["report.json"]
    assert (out / "report.json").read_text() == "{}"


def test_debug_shows_the_traceback(cli, tmp_path):
    result = cli("--debug", "convert", "no_such_pkg.models:build", "-o", tmp_path / "o")
    assert result.code == ExitCode.BAD_INPUT and "Traceback" in result.err


def test_the_real_process_exits_with_the_code(files, tmp_path):
    result = run_process("convert", files / "whole_model.pt", "-o", tmp_path / "out")
    assert result.code == ExitCode.BAD_INPUT
    assert "--trust-code" in result.err and "Traceback" not in result.err
    assert_untouched(tmp_path / "out")


@pytest.fixture(scope="module")
def torchless(tmp_path_factory) -> Path:
    """A real Python environment that has onnxport, pluggy and numpy, and no torch."""
    return onnxport_without_frameworks(tmp_path_factory.mktemp("torchless"))


def _run_torchless(root: Path, *args: str) -> subprocess.CompletedProcess:
    code = (f"import sys; sys.path[:0] = [{str(root)!r}]\n"
            "from onnxport.cli import main\n"
            f"raise SystemExit(main({list(args)!r}))")
    return subprocess.run([sys.executable, "-S", "-c", code], capture_output=True,
                          text=True, cwd=ROOT)


def test_torch_not_installed_says_which_extra(torchless, files, tmp_path):
    probe = subprocess.run([sys.executable, "-S", "-c",
                            f"import sys; sys.path[:0] = [{str(torchless)!r}]\n"
                            "import importlib.util; print(importlib.util.find_spec('torch'))"],
                           capture_output=True, text=True)
    assert probe.stdout.strip() == "None", "the environment must really lack torch"

    listing = _run_torchless(torchless, "plugins")
    assert listing.returncode == 0, listing.stderr
    assert "DISABLED: needs torch" in listing.stdout
    assert "pip install 'onnxport[torch]'" in listing.stdout

    out = tmp_path / "out"
    from_factory = _run_torchless(torchless, "convert", AUTOPILOT, "-o", str(out))
    assert from_factory.returncode == ExitCode.MISSING_DEPENDENCY
    assert from_factory.stderr.strip() == (
        f"onnxport: error: torch is not installed, and the factory {AUTOPILOT} needs it: "
        "pip install 'onnxport[torch]'")
    program = tmp_path / "model.pt2"
    shutil.copy(files / "autopilot_sd.pt", program)
    from_file = _run_torchless(torchless, "convert", str(program), "-o", str(out))
    assert from_file.returncode == ExitCode.MISSING_DEPENDENCY
    assert "the torch backend needs it: pip install 'onnxport[torch]'" in from_file.stderr
    assert_untouched(out)
