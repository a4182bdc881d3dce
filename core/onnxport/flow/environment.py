"""The machine and package versions a result was produced on, read without importing."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from functools import lru_cache

from onnxport import __version__

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


# CPU features that decide how INT8 runs here (onnxruntime's MLAS kernels).
INT8_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx512vnni", "avx_vnni", "amx_int8",
                 "asimd", "asimddp", "i8mm")
_VNNI = ("avx512_vnni", "avx512vnni", "avx_vnni", "amx_int8")


@lru_cache(maxsize=1)
def machine() -> dict[str, object]:
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cpu_features": sorted(cpu_flags() & set(INT8_FEATURES)),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
    }


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo); empty where unknown."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                key = line.split(":", 1)[0].strip().lower()
                if key in ("flags", "features"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def u8s8_saturates_here(machine_name: str | None = None,
                        flags: frozenset[str] | None = None) -> bool:
    """True on x86-64 without VNNI: onnxruntime's uint8 x int8 kernels add pairs of
    products into a saturating int16 there (vpmaddubsw), so INT8 with 8-bit weights can
    be less accurate here than on the ARM or VNNI CPU it was made for."""
    machine_name = (machine_name or platform.machine()).lower()
    flags = cpu_flags() if flags is None else flags
    return machine_name in ("x86_64", "amd64") and not any(f in flags for f in _VNNI)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
