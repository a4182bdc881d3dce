"""The built-in local-directory publisher (file://): versioned NAME/vYYYYMMDD_HHMMSS/,
idempotent by sha256, --force, pull back and run, and a tampered artifact refused on
the way out and on the way back."""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import time

import pytest

import onnxport
from onnxport.errors import BadInput, ExitCode, VerificationFailed

from conftest import BIN, ROOT, assert_untouched, run_process
from servers import assert_runs_like_the_original, copy_artifact
from servers import reference_artifact  # noqa: F401 (fixture)

VERSION = r"v\d{8}_\d{6}"


def _files(directory) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes()
            for p in directory.rglob("*") if p.is_file()}


def _next_second() -> None:
    """Versions are named to the second: wait for the next one."""
    now = datetime.datetime.now(datetime.timezone.utc)
    time.sleep(1.05 - now.microsecond / 1e6)


def test_publish_versioned_copy_then_pull_and_run(reference_artifact, cli, tmp_path):
    shelf = tmp_path / "shelf"
    done = cli("publish", reference_artifact, "--to", f"file://{shelf}")
    assert done.code == ExitCode.OK, done.err
    uri = re.fullmatch(r"published: (\S+)\n", done.out).group(1)
    published = shelf / "localization" / re.fullmatch(
        rf"file://{shelf}/localization/({VERSION})", uri).group(1)
    copied = _files(published)
    assert copied.pop(".onnxport-digest")
    assert copied == _files(reference_artifact)
    assert not [p for p in published.parent.iterdir() if p.name.endswith(".partial")]

    pulled = tmp_path / "pulled"
    back = cli("pull", uri, "-o", pulled)
    assert back.code == ExitCode.OK, back.err
    assert back.out.strip() == f"pulled {uri} into {pulled}"
    assert _files(pulled) == _files(reference_artifact)
    assert_runs_like_the_original(pulled, reference_artifact)


def test_same_artifact_is_not_copied_twice_unless_forced(reference_artifact, tmp_path):
    shelf = tmp_path / "shelf"
    first = onnxport.publish(reference_artifact, f"file://{shelf}")
    again = onnxport.publish(reference_artifact, f"file://{shelf}")
    assert first.created and not again.created and again.uri == first.uri
    assert "already published" in again.details["reason"]
    _next_second()
    forced = onnxport.publish(reference_artifact, f"file://{shelf}", force=True)
    assert forced.created and forced.uri != first.uri
    assert len(list((shelf / "localization").glob("v*"))) == 2


def test_force_twice_in_the_same_second(reference_artifact, tmp_path, monkeypatch):
    import onnxport.artifact.publishing

    monkeypatch.setattr(onnxport.artifact.publishing, "version_tag", lambda: "v20261123_120000")
    shelf = tmp_path / "shelf"
    onnxport.publish(reference_artifact, f"file://{shelf}")
    onnxport.publish(reference_artifact, f"file://{shelf}", force=True)
    versions = sorted(p.name for p in (shelf / "localization").glob("v*"))
    assert versions == ["v20261123_120000", "v20261123_120000_2"]
    pulled = onnxport.pull(f"file://{shelf}/localization", tmp_path / "newest")
    assert (pulled / "report.json").is_file()


def test_tampered_artifact_is_refused(reference_artifact, cli, tmp_path):
    artifact = copy_artifact(reference_artifact, tmp_path / "artifact")
    model = artifact / "cpu" / "localization.onnx"
    model.write_bytes(model.read_bytes()[:-1])
    shelf = tmp_path / "shelf"
    refused = cli("publish", artifact, "--to", f"file://{shelf}")
    assert refused.code == ExitCode.BAD_INPUT
    assert "does not match its manifest" in refused.err
    assert "refusing to publish it" in refused.err
    assert not shelf.exists()


def test_pull_refuses_a_published_copy_changed_since(reference_artifact, tmp_path):
    shelf = tmp_path / "shelf"
    uri = onnxport.publish(reference_artifact, f"file://{shelf}").uri
    (stored,) = shelf.glob("localization/v*/cpu/localization.onnx")
    stored.write_bytes(b"\0" * stored.stat().st_size)  # same size, other bytes
    with pytest.raises(VerificationFailed, match="does not match its manifest after the "
                                                 "download"):
        onnxport.pull(uri, tmp_path / "pulled")
    assert_untouched(tmp_path / "pulled")
    with pytest.raises(BadInput, match="is not a published artifact"):
        onnxport.pull(f"file://{tmp_path / 'nothing'}", tmp_path / "pulled")
    assert_untouched(tmp_path / "pulled")


def test_credentials_in_uris_never_reach_the_manifest(cli, tmp_path):
    out = tmp_path / "out"
    shelf = tmp_path / "shelf"
    result = cli("convert", f"{ROOT}/tests/models.py:two_heads", "-o", out,
                 "--latency-runs", "0", "--publish", f"file://{shelf}",
                 "--publish-option", "tracking_uri=http://alice:s3cret@127.0.0.1:9/x")
    assert result.code == 0, result.err
    assert "published: file://" in result.out
    for path in [*out.rglob("*.json"), *out.rglob("*.md"), *out.rglob("*.html")]:
        assert "s3cret" not in path.read_text(), path
    made_by = json.loads((out / "cpu" / "manifest.json").read_text())["made_by"]
    assert "http://***@127.0.0.1:9/x" in made_by["command"]


def _on_a_terminal(*args) -> tuple[int, str, str]:
    """Run onnxport with stderr on a pseudo-terminal, as a person at a shell sees it."""
    leader, follower = os.openpty()
    done = subprocess.run([str(BIN / "onnxport"), *map(str, args)], stdout=subprocess.PIPE,
                          stderr=follower, text=True, timeout=300)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the terminal's other side is closed and drained
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    return done.returncode, done.stdout, b"".join(chunks).decode()


def test_publish_and_pull_show_progress_on_a_terminal_and_never_in_a_pipe(
        reference_artifact, tmp_path):
    shelf = tmp_path / "shelf"
    code, out, err = _on_a_terminal("publish", reference_artifact, "--to", f"file://{shelf}")
    assert code == 0, err
    assert re.search(r"publish: ok \d+\.\ds\s+[\d.]+ [KM]B sent", err), err
    assert out.startswith("published: ")  # the result stays on stdout, apart from progress
    uri = out.split()[1]
    code, _, err = _on_a_terminal("pull", uri, "-o", tmp_path / "back")
    assert code == 0 and re.search(r"pull: ok \d+\.\ds\s+[\d.]+ [KM]B", err), err
    piped = run_process("pull", uri, "-o", tmp_path / "again")
    assert piped.code == 0 and "pull:" not in piped.err, piped.err
