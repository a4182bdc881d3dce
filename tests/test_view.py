"""`onnxport view`: the built-in Netron plugin serves an artifact's model (found through
the one artifact reader) or a bare .onnx file on 127.0.0.1; a real Netron server is
started on a free port, its page and the model fetched over HTTP, then stopped."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import onnxport
from onnxport.errors import ExitCode

from conftest import BIN, ROOT
from servers import free_ports

MODELS = ROOT / "tests" / "models.py"


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("view") / "two_heads"
    onnxport.convert(f"{MODELS}:two_heads", output=out, latency_runs=0)
    return out


def _get(url: str, timeout: float = 5) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        assert answer.status == 200
        return answer.read()


def _wait_for(url: str, seconds: float = 30) -> bytes:
    deadline = time.monotonic() + seconds
    while True:
        try:
            return _get(url)
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_view_serves_the_artifacts_model_in_netron_until_stopped(artifact, tmp_path):
    (port,) = free_ports(1)
    # Ctrl-C as a terminal delivers it. A suite started in the background by a
    # non-interactive shell (`make test &`) inherits SIGINT ignored, and so would the
    # command: give it the default disposition, as a terminal's foreground job has.
    process = subprocess.Popen([str(BIN / "onnxport"), "view", str(artifact), "--port",
                                str(port)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT,
                                                                signal.SIG_DFL))
    try:
        page = _wait_for(f"http://127.0.0.1:{port}/").decode()
        assert "<title>Netron</title>" in page or "netron" in page.lower()
        assert '<meta name="file" content="/data/two_heads.onnx">' in page
        served = _get(f"http://127.0.0.1:{port}/data/two_heads.onnx")
        assert served == (artifact / "cpu" / "two_heads.onnx").read_bytes()
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            out, err = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:  # not stopped by Ctrl-C: fail, leave nothing
            process.kill()
            process.communicate()
            raise
    assert process.returncode == 0, err
    assert out.splitlines()[0] == (f"Netron: serving {artifact / 'cpu' / 'two_heads.onnx'} "
                                   f"at http://127.0.0.1:{port} (until Ctrl-C)")
    assert out.splitlines()[-1] == "Netron: stopped"
    with pytest.raises(urllib.error.URLError):
        _get(f"http://127.0.0.1:{port}/", timeout=2)


def test_view_a_bare_onnx_file_for_some_seconds(artifact, cli, tmp_path):
    model = tmp_path / "model.onnx"
    shutil.copy(artifact / "cpu" / "two_heads.onnx", model)
    (port,) = free_ports(1)
    fetched: dict[str, bytes] = {}

    def fetch() -> None:
        fetched["model"] = _wait_for(f"http://127.0.0.1:{port}/data/model.onnx")

    reader = threading.Thread(target=fetch)
    reader.start()
    started = time.monotonic()
    done = cli("view", model, "--port", port, "--seconds", "3")
    reader.join(timeout=30)
    assert done.code == ExitCode.OK, done.err
    assert 2.5 < time.monotonic() - started < 30
    assert fetched["model"] == model.read_bytes()
    assert done.out.splitlines() == [
        f"Netron: serving {model} at http://127.0.0.1:{port} (for 3 s)", "Netron: stopped"]


def test_view_goes_through_the_artifact_reader(artifact, cli, tmp_path):
    """A manifest whose model path leaves the target directory is refused, as every
    command refuses it; so is a link, an unknown target, and a file that is not ONNX."""
    copy = tmp_path / "artifact"
    shutil.copytree(artifact, copy)
    (tmp_path / "secret.onnx").write_bytes(b"not yours")
    manifest = copy / "cpu" / "manifest.json"
    data = json.loads(manifest.read_text())
    data["model"] = "../../secret.onnx"
    manifest.write_text(json.dumps(data))
    refused = cli("view", copy, "--port", "0", "--seconds", "0")
    assert refused.code == ExitCode.BAD_INPUT
    assert "secret.onnx" not in refused.out
    data["model"] = "two_heads.onnx"
    manifest.write_text(json.dumps(data))
    (copy / "cpu" / "two_heads.onnx").unlink()
    (copy / "cpu" / "two_heads.onnx").symlink_to(tmp_path / "secret.onnx")
    linked = cli("view", copy, "--port", "0", "--seconds", "0")
    assert linked.code == ExitCode.BAD_INPUT and "link" in linked.err
    unknown = cli("view", artifact, "--target", "rpi4", "--seconds", "0")
    assert unknown.code == ExitCode.BAD_INPUT and "has no target 'rpi4'" in unknown.err
    not_onnx = cli("view", artifact / "report.json", "--seconds", "0")
    assert not_onnx.code == ExitCode.BAD_INPUT and "is not an .onnx file" in not_onnx.err


def test_view_without_netron_says_how_to_install_it(artifact, cli, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "netron", None)  # import netron raises ImportError
    done = cli("view", artifact, "--seconds", "0")
    assert done.code == ExitCode.MISSING_DEPENDENCY == 5
    assert done.err == ("onnxport: error: netron is not installed, and onnxport view needs "
                        "it: pip install netron\n")
