"""Hostile artifacts, faults and misuse: nothing read, written or run where it should not
be, nothing lost. Each test causes its fault for real (a killed process, a hanging
factory, a symlink to /etc, a file-size limit) and checks the one-line answer, the exit
code and the disk."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import onnxport
from onnxport.errors import ExitCode

from conftest import BIN, ROOT, CliResult, run_process

HOSTILE = ROOT / "tests" / "hostile_models.py"
FAST = ("--latency-runs", "0", "--batch-sizes", "1")


def hostile(name: str) -> str:
    return f"{HOSTILE}:{name}"


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    """A small real artifact, made once; tests copy it before they tamper with it."""
    out = tmp_path_factory.mktemp("made") / "tiny"
    onnxport.convert(hostile("tiny"), output=out, latency_runs=0, name="tiny")
    return out


@pytest.fixture
def received(artifact, tmp_path) -> Path:
    """A copy of the artifact, as another team would hand it over."""
    copy = tmp_path / "received"
    shutil.copytree(artifact, copy)
    return copy


def _edit_manifest(directory: Path, change) -> None:
    path = directory / "cpu" / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def _debris(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}."))


# --------------------------------------------------------------------------- 1. code


def test_no_command_runs_the_code_an_artifact_names(received, tmp_path):
    evil = received / "cpu" / "evil.py"
    evil.write_text(HOSTILE.read_text())
    _edit_manifest(received, lambda m: m["source"].update(origin=f"{evil}:writes_a_marker"))
    marker = tmp_path / "ran"
    env = {"ONNXPORT_TEST_MARKER": str(marker)}
    verify = run_process("verify", received, env=env)
    assert verify.code == 0 and "numerics were not checked again" in verify.out
    diagnose = run_process("diagnose", received, env=env)
    assert diagnose.code == ExitCode.BAD_INPUT and "--trust-code" in diagnose.err
    bench = run_process("bench", received, "--with-source", "--runs", "1", env=env)
    assert bench.code == ExitCode.BAD_INPUT and "--trust-code" in bench.err
    assert not marker.exists(), "a command ran the factory the artifact names"
    trusted = run_process("verify", received, "--trust-code", env=env)
    assert trusted.code == 0, trusted.err
    assert marker.read_text() == "the factory ran"  # only with the opt-in


@pytest.mark.parametrize("factory_name, words", [
    ("sys_exit_in_factory", "called sys.exit(0) instead of returning a model"),
    ("exits_in_factory", "ended with exit code 0 in stage load without a result"),
    ("exits_in_forward", "called sys.exit(0) in stage"),
])
def test_code_that_exits_is_a_failure_never_exit_0(tmp_path, factory_name, words):
    out = tmp_path / "out"
    result = run_process("convert", hostile(factory_name), "-o", out, *FAST)
    assert result.code == ExitCode.CRASHED, result.err
    assert words in result.err and "Traceback" not in result.err
    assert not out.exists() and _debris(out) == []


def test_a_native_abort_is_contained_and_named(tmp_path):
    out = tmp_path / "out"
    result = run_process("convert", hostile("aborts_in_forward"), "-o", out, *FAST)
    assert result.code == ExitCode.CRASHED
    assert "the conversion process died of SIGABRT in stage" in result.err
    assert not out.exists() and _debris(out) == []


def test_a_hang_stops_at_the_timeout_and_says_where(tmp_path):
    out = tmp_path / "out"
    started = time.monotonic()
    result = run_process("convert", hostile("hangs_in_factory"), "-o", out,
                         "--timeout", "8")
    assert result.code == ExitCode.TIMEOUT, result.err
    assert "did not finish within 8 s (it was in stage load)" in result.err
    assert time.monotonic() - started < 60
    assert not out.exists() and _debris(out) == []


# --------------------------------------------------------------------------- 2, 3, 4. paths


@pytest.mark.parametrize("model", ["../../../etc/passwd", "/etc/passwd", "cpu/../../x"])
def test_a_manifest_path_outside_the_artifact_is_refused_by_every_command(received, model):
    _edit_manifest(received, lambda m: m.update(model=model))
    for args in (("verify", received), ("inspect", received),
                 ("bench", received, "--runs", "1"),
                 ("diagnose", received, "--source", hostile("tiny")),
                 ("publish", received, "--to", f"file://{received.parent / 'registry'}")):
        result = run_process(*args)
        assert result.code == ExitCode.BAD_INPUT, (args, result.err)
        assert "outside its directory" in result.err or "outside" in result.out, args
        assert "passwd" not in result.out.replace(model, ""), args
    assert not (received.parent / "registry").exists()


def test_a_symlinked_model_is_never_followed(received, tmp_path):
    model = received / "cpu" / "tiny.onnx"
    elsewhere = tmp_path / "elsewhere.onnx"
    shutil.move(model, elsewhere)
    model.symlink_to(elsewhere)
    for args in (("verify", received), ("inspect", received),
                 ("publish", received, "--to", f"file://{tmp_path / 'registry'}")):
        result = run_process(*args)
        assert result.code != 0 and "symbolic link" in result.err + result.out, args
    from onnxport.runtime import ArtifactError, InferenceModel

    with pytest.raises(ArtifactError, match="symbolic link"):
        InferenceModel(received)


def test_publish_copies_listed_files_only_and_pull_refuses_links(received, tmp_path):
    (received / "cpu" / "etc").symlink_to("/etc")  # not listed: never published
    registry = tmp_path / "registry"
    assert run_process("publish", received, "--to", f"file://{registry}").code == 0
    (version,) = (registry / "tiny").iterdir()
    assert not (version / "cpu" / "etc").exists()
    assert sorted(p.name for p in (version / "cpu").iterdir()) == ["manifest.json",
                                                                   "tiny.onnx"]
    (version / "cpu" / "leak").symlink_to("/etc/hostname")
    pulled = tmp_path / "pulled"
    result = run_process("pull", f"file://{version}", "-o", pulled)
    assert result.code == ExitCode.VERIFICATION_FAILED and "symbolic link" in result.err
    assert not pulled.exists() and _debris(pulled) == []


@pytest.mark.parametrize("name", ["../../escape", "/tmp/escape", "a/b"])
def test_a_registry_path_comes_only_from_a_safe_name(received, tmp_path, name):
    report = json.loads((received / "report.json").read_text())
    report["name"] = name
    (received / "report.json").write_text(json.dumps(report))
    registry = tmp_path / "deep" / "registry"
    result = run_process("publish", received, "--to", f"file://{registry}")
    assert result.code == ExitCode.BAD_INPUT and "is not a safe name" in result.err
    assert not (tmp_path / "escape").exists() and not Path("/tmp/escape").exists()
    assert not registry.exists()


# --------------------------------------------------------------------------- 5. overwrite


def test_overwrite_replaces_an_artifact_and_nothing_else(tmp_path):
    work = tmp_path / "project"
    work.mkdir()
    model = work / "model.py"
    model.write_text(HOSTILE.read_text())
    for output, words in ((work, "holds"), (tmp_path, "holds")):
        refused = run_process("convert", f"{model}:tiny", "-o", output, "--overwrite",
                              *FAST, cwd=work)
        assert refused.code == ExitCode.BAD_INPUT, refused.err
        assert words in refused.err or "working directory" in refused.err
    here = run_process("convert", f"{model}:tiny", "-o", ".", "--overwrite", *FAST,
                       cwd=work)
    assert here.code == ExitCode.BAD_INPUT and "working directory" in here.err
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "thesis.txt").write_text("years of work")
    refused = run_process("convert", f"{model}:tiny", "-o", notes, "--overwrite", *FAST)
    assert refused.code == ExitCode.BAD_INPUT
    assert "not an onnxport artifact" in refused.err
    assert "pass --overwrite" not in refused.err
    assert (notes / "thesis.txt").read_text() == "years of work"
    assert model.read_text() == HOSTILE.read_text()


# --------------------------------------------------------------------------- 6, 7. commits


def _start(args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "onnxport"), *map(str, args)], cwd=ROOT,
                            env={**os.environ, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _wait_for(process: subprocess.Popen, words: str, limit: float = 300) -> None:
    deadline = time.monotonic() + limit
    seen = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        seen.append(line)
        if words in line:
            return
        if not line and process.poll() is not None:
            break
    raise AssertionError(f"never saw {words!r}: {''.join(seen)[-2000:]}")


@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "two-renames"])
def test_a_kill_inside_the_commit_leaves_a_complete_artifact(artifact, tmp_path, exchange):
    out = tmp_path / "out"
    shutil.copytree(artifact, out)
    before = (out / "report.json").read_text()
    env = {"ONNXPORT_TEST_COMMIT_PAUSE": "60"}
    if not exchange:
        env["ONNXPORT_TEST_NO_EXCHANGE"] = "1"
    process = _start(["convert", hostile("tiny"), "-o", out, "--overwrite", "--in-process",
                      "--name", "tiny", *FAST], env)
    _wait_for(process, "onnxport test: commit paused")
    process.send_signal(signal.SIGKILL)  # kill -9 in the commit window
    process.wait()
    if exchange:  # the new artifact is in place; the old one waits as debris
        assert (out / "report.json").read_text() != before
        assert run_process("verify", out).code == 0
    else:  # the old one was moved aside: DIR is missing until the next run recovers it
        assert not out.exists() and _debris(out)
    again = run_process("convert", hostile("tiny"), "-o", out, "--overwrite",
                        "--name", "tiny", *FAST)
    assert again.code == 0, again.err
    assert _debris(out) == [] and run_process("verify", out).code == 0


def test_two_conversions_into_one_directory_one_wins(tmp_path):
    out = tmp_path / "out"
    first = _start(["convert", hostile("tiny"), "-o", out, *FAST],
                   {"ONNXPORT_TEST_COMMIT_PAUSE": "5"})
    _wait_for(first, "onnxport test: commit paused")
    second = run_process("convert", hostile("tiny"), "-o", out, *FAST)
    assert first.wait() == 0
    assert second.code == ExitCode.BAD_INPUT
    assert "is being written by another onnxport process" in second.err
    assert run_process("verify", out).code == 0 and _debris(out) == []


def test_an_output_that_is_a_mount_point_gets_the_artifact_inside(tmp_path):
    volume, backing = tmp_path / "volume", tmp_path / "backing"
    volume.mkdir()
    backing.mkdir()
    mounted = subprocess.run(["mount", "--bind", str(backing), str(volume)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot make a mount point here: {mounted.stderr.decode().strip()}")
    try:
        from onnxport.artifact.committing import is_mount_point

        assert is_mount_point(volume)
        result = run_process("convert", hostile("tiny"), "-o", volume, *FAST)
        assert result.code == 0, result.err
        assert (backing / "report.json").is_file() and (backing / "cpu").is_dir()
        again = run_process("convert", hostile("tiny"), "-o", volume, "--overwrite", *FAST)
        assert again.code == 0, again.err
        assert not [p for p in volume.iterdir() if p.name.startswith(".onnxport-")]
    finally:
        subprocess.run(["umount", str(volume)], check=False)


# --------------------------------------------------------------------------- 9-11. verdicts


def test_nan_outputs_fail_unless_the_user_expects_them(tmp_path):
    refused = run_process("convert", hostile("all_nan"), "-o", tmp_path / "a", *FAST)
    assert refused.code == ExitCode.VERIFICATION_FAILED
    assert "--allow-nonfinite" in refused.err + refused.out
    allowed = run_process("convert", hostile("all_nan"), "-o", tmp_path / "b",
                          "--allow-nonfinite", *FAST)
    assert allowed.code == 0, allowed.err
    assert "accepted in the same places because --allow-nonfinite" in \
        " ".join(allowed.out.split())


def test_json_stays_parseable_whatever_the_model_prints(cli, tmp_path):
    worker = run_process("convert", hostile("prints_in_forward"), "-o", tmp_path / "a",
                         "--json", *FAST)
    assert worker.code == 0 and json.loads(worker.out)["status"] == "passed"
    assert "forward called" in worker.err and "native library" in worker.err
    here = cli("convert", hostile("prints_in_forward"), "-o", tmp_path / "b", "--json",
               *FAST)
    assert here.code == 0 and json.loads(here.out)["status"] == "passed"


# --------------------------------------------------------------------------- 12-14. misuse


@pytest.mark.parametrize("args, words", [
    (("--pass-option", "quantise.mode=on"), "names the pass 'quantise', which no "
                                             "installed plugin provides"),
    (("--pass-option", "simplify.fuse_bn=false"), "unknown option simplify.fuse_bn: "
                                                   "known options:"),
    (("--atol", "-1"), "--atol -1.0: must be a finite number >= 0"),
    (("--latency-runs", "-5"), "--latency-runs -5: must be a whole number >= 0"),
    (("--batch-sizes", "0"), "--batch-sizes 0: must be a whole number >= 1"),
    (("--tolerance", "y:atol=-1"), "a budget is a number >= 0"),
    (("--timeout", "-1"), "--timeout -1.0: must be a number of seconds >= 0"),
])
def test_wrong_options_are_bad_input(cli, tmp_path, args, words):
    result = cli("convert", hostile("tiny"), "-o", tmp_path / "out", *args)
    assert result.code == ExitCode.BAD_INPUT, result.err
    assert words in result.err and not (tmp_path / "out").exists()


@pytest.mark.parametrize("below, words", [
    ("x" * 300, "the path is too long"),
    ("a-file", "a part of the path is a file, not a directory"),
])
def test_a_path_the_system_refuses_is_an_environment_error(tmp_path, below, words):
    (tmp_path / "a-file").write_text("not a directory")
    out = tmp_path / below / "sub" / "out"
    result = run_process("convert", hostile("tiny"), "-o", out, *FAST)
    assert result.code == ExitCode.ENVIRONMENT, result.err
    assert words in result.err and "Traceback" not in result.err
    assert (tmp_path / "a-file").read_text() == "not a directory"


def test_a_file_size_limit_during_export_is_the_machine_not_the_exporter(tmp_path):
    """RLIMIT_FSIZE makes the OS refuse the export's write, as a full disk does."""
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    done = subprocess.run([str(BIN / "onnxport"), "convert",
                           f"{ROOT / 'examples/zoo/planner.py'}:build", "-o",
                           str(tmp_path / "out"), *FAST], capture_output=True, text=True,
                          preexec_fn=limit, cwd=ROOT)
    result = CliResult(done.returncode, done.stdout, done.stderr)
    assert result.code == ExitCode.ENVIRONMENT, result.err
    assert "a file grew past the size this process may write" in result.err
    assert "export failed" not in result.err.lower()


def test_a_manifest_with_wrong_types_is_one_line(received):
    _edit_manifest(received, lambda m: m["interface"].update(inputs="x"))
    result = run_process("verify", received, "--source", hostile("tiny"))
    assert result.code == ExitCode.BAD_INPUT
    assert "interface.inputs must be a list, not str" in result.err
    assert "Traceback" not in result.err


def test_an_empty_batch_and_a_giant_file_name_their_cause(tmp_path, cli):
    import numpy as np

    data = tmp_path / "empty.npz"
    np.savez(data, x=np.zeros((0, 4), np.float32))
    empty = cli("convert", hostile("tiny"), "-o", tmp_path / "a", "--data", data)
    assert empty.code == ExitCode.BAD_INPUT and "the array for x is empty" in empty.err
    giant = tmp_path / "giant.onnx"
    with open(giant, "wb") as handle:
        handle.truncate(2**31 + 1)  # sparse: no disk used
    result = cli("inspect", giant)
    assert result.code == ExitCode.BAD_INPUT
    assert "past protobuf's 2 GB limit" in result.err and "corrupt" not in result.err
