"""Which built-in target this machine's CPU matches, for the `auto` target."""

from __future__ import annotations

import platform

from onnxport.flow.environment import cpu_flags


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
