"""What this machine's CPU can do, for the `auto` target (Linux /proc/cpuinfo flags)."""

from __future__ import annotations

import platform
from functools import lru_cache


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                key = line.split(":", 1)[0].strip().lower()
                if key in ("flags", "features"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def pick_target(machine: str | None = None, flags: frozenset[str] | None = None
                ) -> tuple[str, str]:
    """The built-in target this CPU matches best, and why."""
    machine = (machine or platform.machine()).lower()
    flags = cpu_flags() if flags is None else flags
    if machine in ("aarch64", "arm64"):
        dot = "asimddp" in flags
        return "arm64", (f"{machine} CPU" + (" with the dot-product extension (asimddp)"
                                             if dot else " without dot-product"))
    if machine in ("x86_64", "amd64"):
        if "avx512_vnni" in flags or "avx512vnni" in flags:
            return "x86-avx512-vnni", "x86-64 CPU with AVX512-VNNI"
        if "avx2" in flags:
            missing = "no AVX512-VNNI" if "avx512f" not in flags else "AVX512 without VNNI"
            return "x86-avx2", f"x86-64 CPU with AVX2 ({missing})"
        return "cpu", "x86-64 CPU without AVX2"
    return "cpu", f"{machine} CPU: no specific target"
