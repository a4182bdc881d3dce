"""The machine and package versions a result was produced on, read without importing."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from functools import lru_cache

from . import __version__

REPORTED_PACKAGES = ("torch", "tensorflow", "keras", "tf2onnx", "onnx", "onnxscript",
                     "onnxruntime", "onnxsim", "numpy", "pluggy")


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions(names=REPORTED_PACKAGES) -> dict[str, str]:
    """onnxport's version and that of each installed package of interest."""
    found = {"onnxport": __version__, "python": platform.python_version()}
    for name in names:
        version = package_version(name)
        if version is None and name == "tensorflow":
            version = package_version("tensorflow-cpu")
        if version is not None:
            found[name] = version
    return found


@lru_cache(maxsize=1)
def machine() -> dict[str, object]:
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
