"""Factories that misbehave the ways real user code does: they exit, abort, hang, print,
or return NaN. Each is tiny so the tests that use them stay fast."""

from __future__ import annotations

import os
import sys
import time


def _tiny(forward=None):
    import torch

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 3)

        def forward(self, x):
            if forward is not None:
                forward()
            return self.fc(x)

    torch.manual_seed(0)
    return Tiny().eval(), {"x": torch.randn(2, 4)}, ["y"]


def tiny():
    return _tiny()


def exits_in_factory():
    os._exit(0)


def sys_exit_in_factory():
    sys.exit(0)


def hangs_in_factory():
    time.sleep(3600)


def aborts_in_forward():
    return _tiny(os.abort)


def exits_in_forward():
    return _tiny(lambda: sys.exit(0))


def prints_in_forward():
    def chatter():
        print("forward called")  # what a debugging user leaves in their model
        os.write(1, b"and a native library writes here too\n")

    return _tiny(chatter)


def all_nan():
    import torch

    class Nan(torch.nn.Module):
        def forward(self, x):
            return x * float("nan")

    return Nan().eval(), {"x": torch.randn(2, 4)}, ["y"]


def writes_a_marker():
    """Used as the source an artifact names: if it runs, a file says so."""
    marker = os.environ.get("ONNXPORT_TEST_MARKER")
    if marker:
        with open(marker, "w") as handle:
            handle.write("the factory ran")
    return _tiny()
