"""A bounded pool of worker processes: threads that each wait on one worker."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

from onnxport.records import ExecutorOptions, Job, JobUpdate

# Peak resident memory of one conversion worker, measured on the reference models
# (benchmarks/fleet.py): a torch export about 0.5 GB, a Keras/tf2onnx export about
# 1.1 GB. The default leaves room for the largest with a margin.
WORKER_MEMORY = 1.5 * 2**30


def default_jobs() -> int:
    """Workers to run at once: no more than the CPUs this process may use, nor than
    the available memory holds at WORKER_MEMORY each, and at least one."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, int(available_memory() // WORKER_MEMORY)))


def available_memory() -> float:
    """Bytes of memory available to new processes (Linux: MemAvailable)."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError):
        return WORKER_MEMORY


def run(jobs: Sequence[Job], options: ExecutorOptions,
        update: Callable[[JobUpdate], None]) -> None:
    from onnxport.flow.worker import run_job

    def one(job: Job) -> None:
        update(JobUpdate(job.key, "running"))
        update(JobUpdate(job.key, "finished", run_job(job)))

    workers = options.jobs or default_jobs()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="onnxport-job") as pool:
        for future in [pool.submit(one, job) for job in jobs]:
            future.result()
