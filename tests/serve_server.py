"""`onnxport serve` as a real server for the tests: the installed console script in a
process group of its own, on a free port of 127.0.0.1, stopped with SIGTERM (or killed
with SIGKILL) like any other server of tests/servers.py."""

from __future__ import annotations

import http.client
import json
import sqlite3
import time
import urllib.request
from pathlib import Path
from typing import Any

from servers import BIN, HOST, ServerProcess, free_ports


class ServeServer(ServerProcess):
    name = "serve"
    grace = 60.0  # a graceful stop drains running jobs

    def __init__(self, root: Path, *args: str, state: Path | None = None,
                 port: int | None = None, env: dict[str, str] | None = None):
        super().__init__(root)
        self.state = Path(state or self.root / "state")
        self.port = port or free_ports(1)[0]
        self.args = [str(a) for a in args]
        self.env = dict(env or {})

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def launch(self, *extra: str) -> "ServeServer":
        self._spawn([str(BIN / "onnxport"), "serve", "--state", str(self.state),
                     "--port", str(self.port), *self.args, *map(str, extra)], env=self.env)
        return self

    def start(self, *extra: str, timeout: float = 60) -> "ServeServer":
        self.launch(*extra)
        self._wait(self._ready, timeout)
        return self

    def restart(self, *extra: str) -> "ServeServer":
        if self.running:
            self.stop()
        return self.start(*extra)

    def _ready(self) -> bool:
        with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as answer:
            return answer.status == 200

    def client(self, token: str | None = None):
        from onnxport_serve.client import ServeClient

        return ServeClient(self.url, token=token, timeout=60)

    def call(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, dict, Any]:
        """One HTTP request: (status, headers, JSON body or text)."""
        connection = http.client.HTTPConnection(HOST, self.port, timeout=60)
        data = raw if raw is not None else (json.dumps(body).encode()
                                            if body is not None else None)
        send = dict(headers or {})
        if body is not None and raw is None:
            send.setdefault("Content-Type", "application/json")
        try:
            connection.request(method, path, body=data, headers=send)
            answer = connection.getresponse()
            text = answer.read()
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = text.decode(errors="replace")
            return answer.status, {k.lower(): v for k, v in answer.getheaders()}, parsed
        finally:
            connection.close()

    def db(self) -> sqlite3.Connection:
        """The job database, read-only, as another process sees it."""
        db = sqlite3.connect(f"file:{self.state / 'jobs.db'}?mode=ro", uri=True,
                             timeout=30)
        db.row_factory = sqlite3.Row
        return db

    def wait_for(self, check, timeout: float = 120, what: str = "the condition") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(0.25)
        raise AssertionError(f"{what} not met within {timeout:.0f} s; server log:\n"
                             + self.log.read_text(errors="replace")[-3000:])
