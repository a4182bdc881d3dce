"""What one `onnxport serve` process is configured with, checked before it binds."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from onnxport.errors import BadInput

MIB = 1 << 20


@dataclass
class Settings:
    state: Path  # jobs.db and the jobs' own directories
    store: str  # a directory, or a publisher URI (s3://..., file://..., mlflow://...)
    models: Path | None = None  # the models file (the fleet file format)
    host: str = "127.0.0.1"
    port: int = 8000
    executor: str = "local"
    ray_address: str | None = None
    jobs: int | None = None  # conversions at once; None: the executor's default
    queue_size: int = 64  # queued jobs before submissions get 429
    timeout: float = 1800.0  # per job, unless the model sets its own
    retries: int = 1  # a job interrupted by a dead server runs again this many times
    max_upload_bytes: int = 256 * MIB
    max_body_bytes: int = 64 * 1024
    drain: float = 30.0  # graceful stop: seconds running jobs get to finish
    lease: float = 20.0  # a server silent this long is dead: its jobs are taken over

    @property
    def db_path(self) -> Path:
        from .db import DB_FILE

        return self.state / DB_FILE

    @property
    def jobs_dir(self) -> Path:
        return self.state / "jobs"

    @property
    def store_is_uri(self) -> bool:
        parsed = urlparse(self.store)
        return bool(parsed.scheme) and len(parsed.scheme) > 1

    @property
    def store_dir(self) -> Path:
        return Path(self.store).absolute()

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def check(self) -> None:
        for flag, value, low in (("--queue-size", self.queue_size, 1),
                                 ("--retries", self.retries, 0),
                                 ("--max-upload-mb", self.max_upload_bytes, 1),
                                 ("--max-body-kb", self.max_body_bytes, 1),
                                 ("--port", self.port, 0)):
            if value < low:
                raise BadInput(f"{flag} must be at least {low}")
        if self.jobs is not None and self.jobs < 1:
            raise BadInput(f"--jobs {self.jobs}: must be at least 1")
        if self.timeout < 0 or self.drain < 0:
            raise BadInput("--timeout and --drain are seconds >= 0")
        if self.models is not None and not Path(self.models).is_file():
            raise BadInput(f"models file {self.models} does not exist",
                           "write one in the fleet file format (docs/serve.md)")
        if not self.store_is_uri:
            try:
                self.store_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise BadInput(f"the store {self.store} cannot be created "
                               f"({exc.strerror})", "choose a writable --store") from exc


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything
