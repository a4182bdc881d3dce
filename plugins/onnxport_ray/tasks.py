"""Jobs as Ray tasks: submitted at once, collected as they finish."""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any, Callable, Sequence

from onnxport.errors import BadInput, ExitCode
from onnxport.records import ConversionOutcome, ExecutorOptions, Job, JobUpdate

log = logging.getLogger("onnxport.ray")


def convert(job: dict[str, Any]) -> dict[str, Any]:
    """The task: one job in a worker process of its own, on the node Ray chose."""
    from onnxport.flow.worker import run_job

    return run_job(Job(**job)).to_json()


def run(jobs: Sequence[Job], options: ExecutorOptions,
        update: Callable[[JobUpdate], None]) -> None:
    import ray

    started_here = _connect(ray, options.address or os.environ.get("RAY_ADDRESS"))
    try:
        task = ray.remote(num_cpus=1, max_retries=0)(convert)
        pending = {}
        for job in jobs:
            pending[task.remote(dataclasses.asdict(job))] = job
            update(JobUpdate(job.key, "running"))
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(done[0])
            update(JobUpdate(job.key, "finished", _outcome(ray, done[0])))
    finally:
        if started_here:
            ray.shutdown()


def _connect(ray, address: str | None) -> bool:
    """Connect to the cluster (or start Ray here); True if this call started it."""
    if ray.is_initialized():
        return False
    if address and address != "auto":
        _reachable(address)
    try:
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise BadInput(f"the Ray cluster at {address} does not answer ({first})",
                       "start it (ray start --head), or check --ray-address and "
                       "RAY_ADDRESS") from exc
    log.info("Ray: %s", ray.cluster_resources())
    return True


def _reachable(address: str, seconds: float = 5.0) -> None:
    """Fail in seconds, not minutes, when nothing listens at the cluster's address (Ray
    itself retries for a long time)."""
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=seconds):
            pass
    except (OSError, ValueError) as exc:
        raise BadInput(f"the Ray cluster at {address} does not answer ({exc})",
                       "start it (ray start --head), or check --ray-address and "
                       "RAY_ADDRESS") from None


def _outcome(ray, ref) -> ConversionOutcome:
    try:
        return ConversionOutcome(**ray.get(ref))
    except Exception as exc:  # the task itself died (its node, its Ray worker)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return ConversionOutcome(passed=False, exit_code=ExitCode.CRASHED, cause="signal",
                                 message=f"the Ray task died: {type(exc).__name__}: "
                                         f"{first[:300]}")

