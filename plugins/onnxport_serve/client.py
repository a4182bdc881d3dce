"""A small client of `onnxport serve`, standard library only (what `onnxport submit`
uses):

    from onnxport_serve.client import ServeClient

    client = ServeClient("http://127.0.0.1:8000", token=os.environ.get("ONNXPORT_TOKEN"))
    job = client.submit("jarvis", targets=["cpu", "rpi4"])
    job = client.wait(job["id"], on_update=print)
    path = client.download(job["id"], "out/")        # out/jarvis, ready for InferenceModel
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Callable, Mapping

FINAL = ("passed", "failed", "cancelled", "interrupted")


class ServeError(Exception):
    """An error answer of the service: HTTP `status`, and its `code`, `message`, `hint`."""

    def __init__(self, status: int, code: str, message: str, hint: str | None = None,
                 retry_after: float | None = None):
        super().__init__(f"{message}" + (f": {hint}" if hint else ""))
        self.status = status
        self.code = code
        self.message = message
        self.hint = hint
        self.retry_after = retry_after


class ServeClient:
    def __init__(self, url: str = "http://127.0.0.1:8000", token: str | None = None,
                 timeout: float = 60.0):
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    # ------------------------------------------------------------------ calls

    def submit(self, model: str, *, targets: list[str] | None = None,
               quantize: str | None = None, options: Mapping[str, Any] | None = None,
               idempotency_key: str | None = None) -> dict:
        """Convert a model the server knows by name; returns the job (state queued)."""
        body = _body(targets, quantize, options)
        return self._call("POST", f"/v1/models/{urllib.parse.quote(model, safe='')}"
                          "/conversions", json_body=body,
                          headers=_idempotency(idempotency_key))

    def upload(self, path: str | Path, *, name: str | None = None,
               targets: list[str] | None = None, quantize: str | None = None,
               options: Mapping[str, Any] | None = None,
               idempotency_key: str | None = None) -> dict:
        """Convert a model file (.onnx, or .keras without custom code)."""
        path = Path(path)
        request = _body(targets, quantize, options)
        if name:
            request["name"] = name
        boundary = "onnxport-" + uuid.uuid4().hex
        head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"request\"\r\n"
                f"Content-Type: application/json\r\n\r\n{json.dumps(request)}\r\n"
                f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
                f"filename=\"{path.name}\"\r\nContent-Type: application/octet-stream"
                "\r\n\r\n").encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        size = len(head) + path.stat().st_size + len(tail)

        def chunks():
            yield head
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    yield block
            yield tail

        return self._call("POST", "/v1/uploads", data=chunks(), headers={
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Content-Length": str(size), **_idempotency(idempotency_key)})

    def job(self, job_id: str) -> dict:
        return self._call("GET", f"/v1/jobs/{job_id}")

    def jobs(self, **query: Any) -> list[dict]:
        text = urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        return self._call("GET", "/v1/jobs" + (f"?{text}" if text else ""))["jobs"]

    def cancel(self, job_id: str) -> dict:
        return self._call("POST", f"/v1/jobs/{job_id}/cancel")

    def model(self, name: str) -> dict:
        return self._call("GET", f"/v1/models/{urllib.parse.quote(name, safe='')}")

    def report(self, job_id: str) -> dict:
        return self._call("GET", f"/v1/jobs/{job_id}/report.json")

    def health(self) -> dict:
        return self._call("GET", "/readyz")

    def wait(self, job_id: str, *, timeout: float | None = None, poll: float = 1.0,
             on_update: Callable[[dict], None] | None = None) -> dict:
        """Poll until the job has ended; `on_update(job)` on each change."""
        deadline = None if timeout is None else time.monotonic() + timeout
        seen = None
        while True:
            job = self.job(job_id)
            mark = (job["state"], len(job.get("stages") or []))
            if mark != seen and on_update is not None:
                on_update(job)
            seen = mark
            if job["state"] in FINAL:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is still {job['state']} after "
                                   f"{timeout:g} s")
            time.sleep(poll)

    def download(self, job_id: str, destination: str | Path) -> Path:
        """Download a passed job's artifact and unpack it into `destination` (made if
        needed); returns the artifact directory (`destination/NAME`). Archive members
        that are links, devices or paths outside are refused (tarfile's data filter)."""
        destination = Path(destination)
        destination.mkdir(parents=True, exist_ok=True)
        request = self._request("GET", f"/v1/jobs/{job_id}/artifact")
        with tempfile.TemporaryDirectory(dir=destination, prefix=".download-") as temp:
            archive = Path(temp) / "artifact.tar.gz"
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as answer, \
                        open(archive, "wb") as handle:
                    shutil.copyfileobj(answer, handle, 1 << 20)
            except urllib.error.HTTPError as exc:
                raise _error(exc) from None
            unpacked = Path(temp) / "unpacked"
            with tarfile.open(archive, "r:gz") as tar:
                tar.extractall(unpacked, filter="data")
            names = [p for p in unpacked.iterdir()]
            if len(names) != 1 or not names[0].is_dir():
                raise ServeError(502, "bad_archive", "the artifact archive does not hold "
                                 "exactly one directory")
            target = destination / names[0].name
            if target.exists():
                shutil.rmtree(target)
            os.replace(names[0], target)
        return target

    # ------------------------------------------------------------------ HTTP

    def _request(self, method: str, path: str, data=None,
                 headers: Mapping[str, str] | None = None) -> urllib.request.Request:
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers=dict(headers or {}))
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        request.add_header("Accept", "application/json")
        return request

    def _call(self, method: str, path: str, *, json_body: Any = None, data=None,
              headers: Mapping[str, str] | None = None) -> Any:
        headers = dict(headers or {})
        if json_body is not None:
            data = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        request = self._request(method, path, data, headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                return json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise _error(exc) from None
        except urllib.error.URLError as exc:
            raise ServeError(0, "unreachable", f"{self.url} does not answer "
                             f"({exc.reason})", "is `onnxport serve` running there?") \
                from None


def _body(targets, quantize, options) -> dict:
    body: dict[str, Any] = {}
    if targets:
        body["targets"] = list(targets)
    if quantize:
        body["quantize"] = quantize
    if options:
        body["options"] = dict(options)
    return body


def _idempotency(key: str | None) -> dict[str, str]:
    return {"Idempotency-Key": key} if key else {}


def _error(exc: urllib.error.HTTPError) -> ServeError:
    try:
        error = json.loads(exc.read()).get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    retry = exc.headers.get("Retry-After") if exc.headers else None
    return ServeError(exc.code, error.get("code", "http_error"),
                      error.get("message", f"HTTP {exc.code}"), error.get("hint"),
                      float(retry) if retry and retry.replace(".", "").isdigit() else None)
