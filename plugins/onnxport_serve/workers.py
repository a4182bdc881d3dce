"""Stopping the worker process of a running job, on this machine.

The core runs each conversion in a worker process (`onnxport.flow.worker`) in a
session of its own, and the worker holds its output's lock file, `.NAME.lock`, with
its pid written in it, for as long as it converts. That is how the server finds the
worker of a job it wants to cancel or requeue, without the executor's help: it reads
the pid, checks that the process is a worker this server started (a child whose command
line runs onnxport.flow.worker), and kills its process group. A worker on another
machine (Ray) cannot be reached this way: see docs/serve.md.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path


def lock_file(output: Path) -> Path:
    from onnxport.artifact.committing import OutputLock

    return OutputLock(Path(output)).path


def worker_pid(output: Path) -> int | None:
    """The pid of this server's worker converting into `output`, if there is one."""
    try:
        text = lock_file(output).read_text().strip()
        pid = int(text)
    except (OSError, ValueError):
        return None
    return pid if _our_worker(pid) else None


def kill_worker(output: Path) -> bool:
    """SIGKILL the worker (and what it started) converting into `output`."""
    pid = worker_pid(output)
    if pid is None:
        return False
    try:
        os.killpg(pid, signal.SIGKILL)  # the worker leads its own session
    except ProcessLookupError:
        return False
    except PermissionError:
        os.kill(pid, signal.SIGKILL)
    return True


def _our_worker(pid: int) -> bool:
    if pid == os.getpid():
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError, IndexError):
        return False
    return parent == os.getpid() and b"onnxport.flow.worker" in command
