"""Factories for the service's tests: tiny models that take a while, and say when they
ran (the restart test counts how often each job's conversion started)."""

from __future__ import annotations

import os
import time


def slow_tiny():
    """The tiny model, after ONNXPORT_TEST_SLEEP seconds; appends "JOB PID" to
    ONNXPORT_TEST_LOG first (JOB: the output directory's name, the job's id)."""
    log = os.environ.get("ONNXPORT_TEST_LOG")
    if log:
        with open(log, "a") as handle:
            handle.write(f"{_job_of_this_worker()} {os.getpid()}\n")
    time.sleep(float(os.environ.get("ONNXPORT_TEST_SLEEP", "3")))
    return tiny()


def tiny():
    """x [batch, 4] -> y [batch, 3], one Linear layer: the smallest model worth
    converting."""
    import torch

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(x)

    torch.manual_seed(0)
    return Tiny().eval(), {"x": torch.randn(2, 4)}, ["y"]


def _job_of_this_worker() -> str:
    """The job this worker converts: the name of the output it holds the lock of."""
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        name = os.path.basename(target)
        if name.startswith(".") and name.endswith(".lock"):
            return name[1:-len(".lock")]
    return "?"
