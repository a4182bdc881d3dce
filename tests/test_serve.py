"""Conversion as a service: `onnxport serve` started as a real uvicorn server on
127.0.0.1 (and on a real Ray head for the ray executor), driven over HTTP, by the
Python client and by `onnxport submit`.

The seed's flow end to end; every kind of bad input (each a JSON error with its status,
nothing written outside the job's directory, the server still serving); cancel and the
per-job timeout; the bounded queue; idempotency keys; tokens and scopes; a server
killed with SIGKILL while jobs are queued and running, restarted beside a second server
on the same database (no job lost, none run twice to completion); a graceful stop that
requeues; and a job interrupted twice.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, run_process
from serve_server import ServeServer
from servers import RayHead, ray_head  # noqa: F401  (a fixture)

TESTS = ROOT / "tests"
pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


def _models_file(directory: Path) -> Path:
    path = directory / "models.toml"
    path.write_text(f'''
[defaults]
latency_runs = 0
batch_sizes = [1]

[[models]]
name = "tiny"
source = "{TESTS / 'serve_models.py'}:tiny"

[[models]]
name = "slow"
source = "{TESTS / 'serve_models.py'}:slow_tiny"

[[models]]
name = "hangs"
source = "{TESTS / 'hostile_models.py'}:hangs_in_factory"
timeout = 6

[[models]]
name = "stuck"
source = "{TESTS / 'hostile_models.py'}:hangs_in_factory"

[[models]]
name = "aborts"
source = "{TESTS / 'hostile_models.py'}:aborts_in_forward"
''')
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server for the tests that do not stop it: two jobs at once, small limits."""
    root = tmp_path_factory.mktemp("serve")
    server = ServeServer(root, "--models", _models_file(root), "--jobs", 2,
                         "--max-upload-mb", 1, "--max-body-kb", 16, "--queue-size", 16,
                         env={"ONNXPORT_TEST_SLEEP": "1"})
    server.start()
    yield server
    server.stop()


def _job_dirs(server: ServeServer) -> set[str]:
    jobs = server.state / "jobs"
    return {p.name for p in jobs.iterdir()} if jobs.is_dir() else set()


def _tiny_reference(x: np.ndarray) -> np.ndarray:
    import torch

    from serve_models import tiny

    model = tiny()[0]
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def _onnx_file(path: Path) -> Path:
    """A Linear layer written with onnx.helper: an upload that needs no framework."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = numpy_helper.from_array(rng.standard_normal((4, 3)).astype(np.float32), "W")
    bias = numpy_helper.from_array(rng.standard_normal(3).astype(np.float32), "B")
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "W", "B"], ["y"])], "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        [weights, bias])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "b0undary",
               close: bool = True) -> tuple[bytes, dict[str, str]]:
    body = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"'
                                                     if filename is not None else "")
        body += (f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n").encode()
        body += data + b"\r\n"
    if close:
        body += f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


# --------------------------------------------------------------------------- the seed


def test_the_seeds_flow_end_to_end(server, tmp_path):
    """The wake-word builder's call, polled to the end, the artifact downloaded and run
    with the runtime; and the same through `onnxport submit --wait -o`."""
    from onnxport.runtime import InferenceModel

    cli = subprocess.Popen([str(Path(os.sys.executable).parent / "onnxport"), "submit",
                            "tiny", "--server", server.url, "--target", "rpi4",
                            "--quantize", "off", "--option", "latency_runs=0",
                            "-o", str(tmp_path / "cli")],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    status, headers, body = server.call("POST", "/api/models/tiny/export-onnx")
    assert status == 202, body
    assert headers["location"] == f"/v1/jobs/{body['id']}" == body["status_url"]
    assert body["state"] == "queued"
    client = server.client()
    job = client.wait(body["id"], timeout=300, poll=0.5)
    assert job["state"] == "passed", job
    stages = [(s["stage"], s["target"], s["status"]) for s in job["stages"]]
    assert stages[:2] == [("load", None, "started"), ("load", None, "ok")], stages
    assert ("export", None, "ok") in stages and ("simplify", "cpu", "ok") in stages
    assert all(s["detail"] != "from the report" for s in job["stages"])  # live, not late

    status, _, seed = server.call("GET", "/api/models/tiny")
    assert status == 200 and seed["has_onnx"] is True and seed["onnx_target"] == "cpu"
    artifact = client.download(job["id"], tmp_path / "download")
    assert artifact == tmp_path / "download" / "tiny"
    model = InferenceModel(artifact, target="cpu")
    assert model.checked  # every file's sha256 against its manifest
    assert seed["onnx_size_bytes"] == model.path.stat().st_size
    x = np.random.default_rng(1).random((3, 4), dtype=np.float32)
    np.testing.assert_allclose(model.predict({"x": x}), _tiny_reference(x), atol=1e-5)

    status, _, view = server.call("GET", "/v1/models/tiny")
    assert view["latest"]["cpu"]["job"] == job["id"] and view["configured"] is True
    status, _, report = server.call("GET", f"/v1/jobs/{job['id']}/report.json")
    assert status == 200 and report["status"] == "passed"
    assert report["made_by"]["serve"]["job"] == job["id"]
    status, headers, html = server.call("GET", f"/v1/jobs/{job['id']}/report.html")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in headers["content-security-policy"]

    out, err = cli.communicate(timeout=300)
    assert cli.returncode == 0, err
    assert "passed (rpi4" in out and f"wrote {tmp_path / 'cli' / 'tiny'}" in out
    assert "  export: ok" in err  # the stages, shown as they came
    rpi = InferenceModel(tmp_path / "cli" / "tiny", target="rpi4")
    np.testing.assert_allclose(rpi.predict({"x": x}), _tiny_reference(x), atol=1e-5)

    status, _, text = server.call("GET", "/metrics")
    assert status == 200 and 'onnxport_serve_jobs{state="passed"}' in text
    assert 'onnxport_serve_job_duration_seconds_count{state="passed"}' in text
    status, _, docs = server.call("GET", "/openapi.json")
    assert "/v1/models/{name}/conversions" in docs["paths"] and "/v1/uploads" in \
        docs["paths"]


def test_an_uploaded_onnx_file_is_converted_and_verified(server, tmp_path):
    from onnxport.runtime import InferenceModel
    from onnxport_serve.client import ServeClient

    source = _onnx_file(tmp_path / "linear.onnx")
    client: ServeClient = server.client()
    job = client.upload(source, name="linear", targets=["cpu", "rpi4"],
                        options={"latency_runs": 0})
    job = client.wait(job["id"], timeout=300, poll=0.5)
    assert job["state"] == "passed", job
    assert job["kind"] == "upload" and job["request"]["file"] == "linear.onnx"
    artifact = client.download(job["id"], tmp_path / "out")
    x = np.random.default_rng(2).random((2, 4), dtype=np.float32)
    import onnxruntime

    expected = onnxruntime.InferenceSession(str(source)).run(None, {"x": x})[0]
    for target in ("cpu", "rpi4"):
        np.testing.assert_allclose(InferenceModel(artifact, target=target).predict(x),
                                   expected, atol=1e-5)
    assert client.model("linear")["has_onnx"] is True


@pytest.mark.slow
def test_an_uploaded_keras_file_converts_in_safe_mode_and_code_is_refused(server,
                                                                          tmp_path):
    """Real Keras 3 files (made in a child process: TensorFlow stays out of this one):
    built-in layers convert; a Lambda layer and a custom layer are refused at upload."""
    import sys

    code = ("import sys; sys.path.insert(0, sys.argv[2]); import keras_models as m; "
            "from pathlib import Path; out = Path(sys.argv[1]); "
            "m.sequential().save(out / 'scorer.keras'); "
            "m.with_lambda().save(out / 'lambda.keras'); "
            "m.with_custom_layer().save(out / 'custom.keras')")
    subprocess.run([sys.executable, "-c", code, str(tmp_path), str(TESTS)], check=True,
                   timeout=300, capture_output=True)
    client = server.client()
    for name, words in (("lambda.keras", "Lambda"), ("custom.keras", "custom")):
        raw, headers = _multipart([("file", name, (tmp_path / name).read_bytes())])
        status, _, body = server.call("POST", "/v1/uploads", raw=raw, headers=headers)
        assert (status, body["error"]["code"]) == (415, "unsupported_format"), body
        assert words in body["error"]["message"], body
    job = client.wait(client.upload(tmp_path / "scorer.keras",
                                    options={"latency_runs": 0})["id"], timeout=600)
    assert job["state"] == "passed", job
    assert job["result"]["targets"]["cpu"]["status"] == "passed"


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("path, raw, status, code", [
    ("/v1/models/tiny/conversions", b"{bad json", 400, "malformed_json"),
    ("/v1/models/tiny/conversions", b'{"targets": ["cpu"], "colour": 1}', 422,
     "unknown_field"),
    ("/v1/models/tiny/conversions", b'{"options": {"weights": "/etc/passwd"}}', 422,
     "unknown_field"),
    ("/v1/models/tiny/conversions", b'{"options": {"trust_code": true}}', 422,
     "unknown_field"),
    ("/v1/models/tiny/conversions", b'{"targets": ["cpu", "quantum"]}', 422,
     "unknown_target"),
    ("/v1/models/tiny/conversions", b'{"quantize": "sometimes"}', 422, "invalid_field"),
    ("/v1/models/tiny/conversions", b'["cpu"]', 422, "invalid_field"),
    ("/v1/models/tiny/conversions", b'{"targets": ["../../etc"]}', 422, "invalid_field"),
    ("/v1/models/nobody/conversions", b"{}", 404, "unknown_model"),
    ("/v1/models/tiny/conversions", b'{"targets": ["' + b"x" * 20000 + b'"]}', 413,
     "too_large"),
    ("/v1/models/../../etc/conversions", b"{}", 404, "not_found"),
])
def test_bad_requests_are_one_json_error_and_write_nothing(server, path, raw, status,
                                                          code):
    before = _job_dirs(server), server.db().execute("SELECT COUNT(*) FROM jobs").fetchone()
    answer, headers, body = server.call("POST", path, raw=raw,
                                        headers={"Content-Type": "application/json"})
    assert (answer, body["error"]["code"]) == (status, code), body
    assert body["error"]["message"] and headers["content-type"] == "application/json"
    after = _job_dirs(server), server.db().execute("SELECT COUNT(*) FROM jobs").fetchone()
    assert tuple(before[1]) == tuple(after[1]) and before[0] == after[0]
    assert server.call("GET", "/readyz")[0] == 200


def test_unknown_jobs_and_missing_artifacts(server):
    for path in ("/v1/jobs/0123456789abcdef0123456789abcdef", "/v1/jobs/not-an-id",
                 "/v1/jobs/0123456789abcdef0123456789abcdef/artifact",
                 "/v1/jobs/..%2F..%2Fetc/report.json"):
        status, _, body = server.call("GET", path)
        assert status == 404 and body["error"]["code"] in ("unknown_job", "not_found"), \
            (path, body)
    status, _, body = server.call("POST",
                                  "/v1/jobs/0123456789abcdef0123456789abcdef/cancel")
    assert status == 404 and body["error"]["code"] == "unknown_job"
    status, _, body = server.call("GET", "/v1/models/nobody")
    assert status == 404 and "tiny" in body["error"]["hint"]


def _keras_like(path: Path, layer: dict) -> Path:
    config = {"module": "keras", "class_name": "Sequential", "config": {
        "name": "m", "layers": [{"module": "keras.layers", "class_name": "InputLayer",
                                 "config": {"batch_shape": [None, 4]}}, layer]}}
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", json.dumps(config))
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
        archive.writestr("model.weights.h5", b"")
    return path


def test_bad_uploads_are_refused_and_write_nothing_outside_the_job(server, tmp_path):
    import pickle

    evil = pickle.dumps({"the": "payload"}, protocol=4)
    torch_zip = io.BytesIO()
    with zipfile.ZipFile(torch_zip, "w") as archive:
        archive.writestr("archive/data.pkl", evil)
    lambda_layer = _keras_like(tmp_path / "lambda.keras", {
        "module": "keras.layers", "class_name": "Lambda",
        "config": {"name": "sneaky", "function": {"class_name": "__lambda__",
                                                  "config": {"code": "4wEAAAAAAAAA"}}}})
    custom_layer = _keras_like(tmp_path / "custom.keras", {
        "module": "mypackage.layers", "class_name": "Backdoor", "config": {},
        "registered_name": "mypackage>Backdoor"})
    onnx_bytes = _onnx_file(tmp_path / "ok.onnx").read_bytes()
    cases = [
        ("evil.onnx", evil, 415, "unsupported_format", "pickle"),
        ("evil.keras", evil, 415, "unsupported_format", "pickle"),
        ("evil.pt", evil, 415, "unsupported_format", "pickle"),
        ("weights.keras", torch_zip.getvalue(), 415, "unsupported_format", "pickles"),
        ("lambda.keras", lambda_layer.read_bytes(), 415, "unsupported_format", "Lambda"),
        ("custom.keras", custom_layer.read_bytes(), 415, "unsupported_format",
         "mypackage"),
        ("junk.onnx", b"\x08\x07" + os.urandom(64), 415, "unsupported_format",
         "not a readable ONNX model"),
        ("text.onnx", b"hello", 415, "unsupported_format", "not an ONNX model"),
        ("../../x.onnx", onnx_bytes, 400, "bad_filename", "not a plain name"),
        ("/tmp/x.onnx", onnx_bytes, 400, "bad_filename", "not a plain name"),
        ("sub/x.onnx", onnx_bytes, 400, "bad_filename", "not a plain name"),
        ("model.exe", onnx_bytes, 415, "unsupported_format", "accepts"),
        ("big.onnx", b"\x08" + os.urandom((1 << 20) + 10), 413, "too_large", "larger"),
    ]
    before = _job_dirs(server)
    for filename, data, status, code, words in cases:
        raw, headers = _multipart([("file", filename, data)])
        answer, _, body = server.call("POST", "/v1/uploads", raw=raw, headers=headers)
        assert (answer, body["error"]["code"]) == (status, code), (filename, body)
        assert words in body["error"]["message"], (filename, body)
    # a body cut short: the closing boundary never comes
    raw, headers = _multipart([("file", "cut.onnx", onnx_bytes)], close=False)
    answer, _, body = server.call("POST", "/v1/uploads", raw=raw[:-10], headers=headers)
    assert (answer, body["error"]["code"]) == (400, "truncated_upload"), body
    # unknown fields, malformed JSON in the request part, no file, not multipart
    for parts, status, code in (
            ([("request", None, b'{"colour": "red"}'), ("file", "a.onnx", onnx_bytes)],
             422, "unknown_field"),
            ([("request", None, b"{nope"), ("file", "a.onnx", onnx_bytes)], 400,
             "malformed_json"),
            ([("request", None, b'{"name": "../up"}'), ("file", "a.onnx", onnx_bytes)],
             422, "invalid_field"),
            ([("request", None, b"{}")], 400, "bad_upload"),
            ([("file", "a.onnx", onnx_bytes), ("file", "b.onnx", onnx_bytes)], 400,
             "bad_upload")):
        raw, headers = _multipart(parts)
        answer, _, body = server.call("POST", "/v1/uploads", raw=raw, headers=headers)
        assert (answer, body["error"]["code"]) == (status, code), (parts[0][0], body)
    answer, _, body = server.call("POST", "/v1/uploads", raw=onnx_bytes,
                                  headers={"Content-Type": "application/octet-stream"})
    assert (answer, body["error"]["code"]) == (415, "unsupported_media_type")
    # a client that announces a body and goes away half-way
    raw, headers = _multipart([("file", "gone.onnx", onnx_bytes * 100)])
    with socket.create_connection(("127.0.0.1", server.port)) as connection:
        connection.sendall(
            (f"POST /v1/uploads HTTP/1.1\r\nHost: x\r\nContent-Type: "
             f"{headers['Content-Type']}\r\nContent-Length: {len(raw)}\r\n\r\n").encode()
            + raw[:len(raw) // 2])
    time.sleep(1.0)

    assert server.call("GET", "/readyz")[0] == 200
    assert _job_dirs(server) == before  # every refused upload's directory is gone
    everything = [p.name for p in server.root.rglob("*")] + \
        [p.name for p in tmp_path.parent.rglob("x.onnx")]
    assert "x.onnx" not in everything and "cut.onnx" not in everything
    assert "gone.onnx" not in everything and "evil.pt" not in everything


# --------------------------------------------------------------------------- jobs


def test_cancel_timeout_crash_and_idempotency(server):
    """A job cancelled while queued, one cancelled while running (its worker killed),
    one past its timeout, one whose model aborts the process: each its own outcome,
    and the server serves on."""
    client = server.client()
    hung = client.submit("hangs")  # the models file gives it 6 s
    first = client.submit("stuck", idempotency_key="k-1")
    again = client.submit("stuck", idempotency_key="k-1")
    assert again["id"] == first["id"]
    status, headers, body = server.call("POST", "/v1/models/stuck/conversions",
                                        {"targets": ["rpi4"]},
                                        headers={"Idempotency-Key": "k-1"})
    assert (status, body["error"]["code"]) == (409, "idempotency_conflict")
    status, headers, body = server.call("POST", "/v1/models/stuck/conversions", {},
                                        headers={"Idempotency-Key": "k-1"})
    assert status == 202 and headers["idempotent-replayed"] == "true"
    assert body["id"] == first["id"]
    queued = client.submit("stuck")  # both slots are busy: this one waits
    aborts = client.submit("aborts")

    cancelled = client.cancel(queued["id"])
    assert cancelled["state"] == "cancelled" and cancelled["error"]["cause"] == "cancelled"
    server.wait_for(lambda: client.job(first["id"])["state"] == "running"
                    and client.job(first["id"])["stages"], what="the job to start")
    assert client.cancel(first["id"])["cancel_requested"] is True
    ended = client.wait(first["id"], timeout=60, poll=0.25)
    assert ended["state"] == "cancelled" and ended["error"]["cause"] == "cancelled"
    timed_out = client.wait(hung["id"], timeout=120, poll=0.5)
    assert timed_out["state"] == "failed", timed_out
    error = timed_out["error"]
    assert (error["exit_code"], error["exit_name"], error["cause"]) == (8, "TIMEOUT",
                                                                      "timeout")
    assert "within 6 s" in error["message"] and error["stage"] == "load"
    status, _, body = server.call("POST", f"/v1/jobs/{hung['id']}/cancel")
    assert (status, body["error"]["code"]) == (409, "not_cancellable")
    crashed = client.wait(aborts["id"], timeout=180, poll=0.5)
    assert crashed["state"] == "failed", crashed
    assert (crashed["error"]["exit_code"], crashed["error"]["cause"]) == (9, "signal")
    assert "SIGABRT" in crashed["error"]["message"]
    assert server.call("GET", "/readyz")[0] == 200
    workers = subprocess.run(["pgrep", "-f", "onnxport.flow.worker"], capture_output=True,
                             text=True).stdout.split()
    children = [p for p in workers if Path(f"/proc/{p}/stat").exists() and
                int(Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[1])
                == server.process.pid]
    assert not children, "a cancelled or timed-out job's worker is still running"


def test_a_full_queue_answers_429_with_retry_after(tmp_path):
    server = ServeServer(tmp_path, "--models", _models_file(tmp_path), "--jobs", 1,
                         "--queue-size", 1).start()
    try:
        client = server.client()
        running = client.submit("stuck")
        server.wait_for(lambda: client.job(running["id"])["state"] == "running")
        waiting = client.submit("stuck")
        status, headers, body = server.call("POST", "/v1/models/tiny/conversions", {})
        assert (status, body["error"]["code"]) == (429, "queue_full"), body
        assert int(headers["retry-after"]) >= 1
        raw, form = _multipart([("file", "a.onnx", _onnx_file(tmp_path / "a.onnx")
                                 .read_bytes())])
        assert server.call("POST", "/v1/uploads", raw=raw, headers=form)[0] == 429
        for job in (waiting, running):
            client.cancel(job["id"])
        server.wait_for(lambda: client.job(running["id"])["state"] == "cancelled")
        status, _, text = server.call("GET", "/metrics")
        assert 'onnxport_serve_submissions_total{result="queue_full"} 2' in text
    finally:
        server.stop()


# --------------------------------------------------------------------------- tokens


def _token(state: Path, *scopes: str) -> str:
    result = run_process("token", "create", "--state", state, "--name", "test",
                         *[a for s in scopes for a in ("--scope", s)])
    assert result.code == 0, result.err
    return result.out.strip()


def test_tokens_and_scopes(tmp_path):
    state = tmp_path / "state"
    exposed = run_process("serve", "--state", state, "--host", "0.0.0.0", "--port", "9")
    assert exposed.code == 2 and "without tokens" in exposed.err, exposed.err
    reader, submitter = _token(state, "read"), _token(state, "submit")
    both = _token(state, "read", "submit")
    assert reader.startswith("onxp_") and reader not in (submitter, both)
    stored = (state / "jobs.db").read_bytes()
    assert reader.encode() not in stored and submitter.encode() not in stored

    server = ServeServer(tmp_path, "--models", _models_file(tmp_path), state=state).start()
    try:
        def call(method, path, token=None, body=None):
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            return server.call(method, path, body, headers=headers)

        status, headers, body = call("GET", "/v1/models")
        assert (status, body["error"]["code"]) == (401, "unauthorized")
        assert headers["www-authenticate"].startswith("Bearer")
        assert call("GET", "/v1/models", "onxp_wrong")[0] == 401
        assert server.call("GET", "/v1/models", headers={"Authorization": reader})[0] == 401
        assert call("GET", "/v1/models", reader)[0] == 200
        status, _, body = call("POST", "/v1/models/hangs/conversions", reader, {})
        assert (status, body["error"]["code"]) == (403, "forbidden")
        assert "'submit'" in body["error"]["message"]
        status, _, job = call("POST", "/v1/models/hangs/conversions", submitter, {})
        assert status == 202
        assert call("GET", f"/v1/jobs/{job['id']}", submitter)[0] == 403
        assert call("GET", f"/v1/jobs/{job['id']}", reader)[0] == 200
        assert call("GET", "/metrics", reader)[0] == 200
        assert call("GET", "/metrics")[0] == 401
        assert call("GET", "/healthz")[0] == 200 and call("GET", "/readyz")[0] == 200
        assert call("POST", f"/v1/jobs/{job['id']}/cancel", both)[0] in (200, 202)

        submitted = run_process("submit", "tiny", "--server", server.url, "--token",
                                reader)
        assert submitted.code == 2 and "HTTP 403 forbidden" in submitted.err

        listed = run_process("token", "list", "--state", state, "--json")
        ids = [t["id"] for t in json.loads(listed.out)]
        assert len(ids) == 3 and "hash" not in listed.out
        assert run_process("token", "revoke", ids[0], "--state", state).code == 0
        assert call("GET", "/v1/models", reader)[0] == 401  # revoked at once
    finally:
        server.stop()


# --------------------------------------------------------------------------- restarts


def _rows(server: ServeServer) -> dict[str, dict]:
    with server.db() as db:
        return {r["id"]: dict(r) for r in db.execute("SELECT * FROM jobs")}


def _started(log: Path) -> list[tuple[str, int]]:
    if not log.exists():
        return []
    return [(line.split()[0], int(line.split()[1]))
            for line in log.read_text().splitlines()]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_sigkill_restart_shared_database_graceful_stop_and_interruption(tmp_path):
    """Four jobs, two running, two queued, when the server is killed; a restarted
    server and a second one on the same database finish all four, each once. Then a
    graceful stop requeues a running job, and a job whose server dies with no retries
    left is marked interrupted."""
    log = tmp_path / "started.log"
    env = {"ONNXPORT_TEST_LOG": str(log), "ONNXPORT_TEST_SLEEP": "2"}
    models = _models_file(tmp_path)
    first = ServeServer(tmp_path / "a", "--models", models, "--jobs", 2,
                        state=tmp_path / "state", env=env).start()
    second = None
    try:
        client = first.client()
        ids = [client.submit("slow")["id"] for _ in range(4)]
        first.wait_for(lambda: len(_started(log)) == 2, what="two jobs to start")
        rows = _rows(first)
        assert sorted(r["state"] for r in rows.values()) == ["queued", "queued",
                                                             "running", "running"]
        killed_workers = [pid for _, pid in _started(log)]
        first.kill()  # SIGKILL: no shutdown, no cleanup
        first.wait_for(lambda: not any(_alive(p) for p in killed_workers), timeout=20,
                       what="the killed server's workers to die with it")

        first.start("--drain", "0")
        second = ServeServer(tmp_path / "b", "--models", models, "--jobs", 1,
                             state=tmp_path / "state", env=env).start()
        jobs = [client.wait(i, timeout=300, poll=0.5) for i in ids]
        assert [j["state"] for j in jobs] == ["passed"] * 4, jobs
        starts = _started(log)
        running_then = {job for job, _ in starts[:2]}
        for job in jobs:
            runs = sum(started == job["id"] for started, _ in starts)
            assert runs == (2 if job["id"] in running_then else 1), (job["id"], starts)
            assert job["attempts"] == runs
            if job["id"] in running_then:
                assert any(s["stage"] == "interrupted" for s in job["stages"])
        owners = {r["owner"] for r in _rows(first).values()}
        assert len(owners) == 2, "both servers on the database took jobs"
        store = tmp_path / "state" / "artifacts" / "slow"
        assert sorted(p.name for p in store.iterdir() if not p.name.startswith(".")) == \
            sorted(ids)  # one artifact per job, no leftovers

        # a graceful stop (SIGTERM) requeues the job it runs, not counted as an attempt
        second.stop()
        graceful = client.submit("slow")["id"]
        first.wait_for(lambda: _rows(first)[graceful]["state"] == "running"
                       and any(j == graceful for j, _ in _started(log)))
        first.stop()  # SIGTERM; --drain 0: stop the running job now
    finally:
        for server in (first, second):
            if server is not None and server.running:
                server.stop()
    row = _rows(first)[graceful]
    assert (row["state"], row["attempts"], row["owner"]) == ("queued", 0, None), row
    # the interrupted case: no retries left when its server dies
    third = ServeServer(tmp_path / "c", "--models", models, "--jobs", 1, "--retries", 0,
                        "--drain", 0, state=tmp_path / "state", env=env).start()
    try:
        third.wait_for(lambda: _rows(third)[graceful]["state"] == "passed", timeout=120,
                       what="the requeued job to pass")
        doomed = third.client().submit("slow")["id"]
        third.wait_for(lambda: any(j == doomed for j, _ in _started(log)))
        third.kill()
        third.start()
        ended = third.client().wait(doomed, timeout=60)
        assert ended["state"] == "interrupted", ended
        assert ended["error"]["cause"] == "interrupted" and ended["error"]["exit_code"] == 9
        assert "stopped while it ran" in ended["error"]["message"]
    finally:
        third.stop()


# --------------------------------------------------------------------------- ray


def test_the_ray_executor_runs_jobs_on_a_real_cluster_into_the_store(tmp_path, ray_head):
    from onnxport.runtime import InferenceModel

    store = tmp_path / "store"
    server = ServeServer(tmp_path, "--models", _models_file(tmp_path), "--executor", "ray",
                         "--ray-address", ray_head.address, "--store", f"file://{store}",
                         env=RayHead.ENV).start(timeout=120)
    try:
        client = server.client()
        job = client.wait(client.submit("tiny")["id"], timeout=300, poll=0.5)
        assert job["state"] == "passed", job
        published = job["result"]["published"]
        assert published and published[0].startswith(f"file://{store}/tiny/v")
        artifact = client.download(job["id"], tmp_path / "download")
        x = np.random.default_rng(3).random((2, 4), dtype=np.float32)
        np.testing.assert_allclose(InferenceModel(artifact).predict(x), _tiny_reference(x),
                                   atol=1e-5)
        assert server.call("GET", "/readyz")[2]["executor"] == "ray"
    finally:
        server.stop()
