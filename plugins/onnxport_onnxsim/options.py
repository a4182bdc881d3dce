"""The `simplify` pass's settings (a target's options["simplify"]), checked by name and type."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from onnxport.errors import BadInput

DEFAULT_TIMEOUT = 300.0  # seconds; onnxsim takes a few seconds on the reference models


@dataclass(frozen=True)
class SimplifyOptions:
    timeout: float = DEFAULT_TIMEOUT  # the child is stopped after this many seconds
    check_n: int = 0  # onnxsim's own check on N random inputs (the core verifies anyway)
    skip_fuse_bn: bool = False  # keep BatchNormalization separate from Conv
    skipped_optimizers: tuple[str, ...] = ()  # onnxsim optimizer passes not to run
    skip_constant_folding: bool = False
    skip_shape_inference: bool = False
    memory_limit_mb: int | None = None  # address-space cap of the child (Linux/macOS)


_TYPES: dict[str, tuple[type, ...]] = {
    "timeout": (int, float), "check_n": (int,), "skip_fuse_bn": (bool,),
    "skipped_optimizers": (list, tuple), "skip_constant_folding": (bool,),
    "skip_shape_inference": (bool,), "memory_limit_mb": (int,),
}


def parse_options(options: Mapping[str, Any], target: str) -> SimplifyOptions:
    """The pass's settings; an unknown key or a wrong type is the user's to fix."""
    values: dict[str, Any] = {}
    for key, value in options.items():
        expected = _TYPES.get(key)
        if expected is None:
            raise BadInput(f"target '{target}': unknown option simplify.{key}",
                           "known options: " + ", ".join(sorted(_TYPES)))
        wrong_bool = isinstance(value, bool) and bool not in expected
        if not isinstance(value, expected) or wrong_bool:
            raise BadInput(f"target '{target}': simplify.{key} must be "
                           f"{' or '.join(t.__name__ for t in expected)}, not {value!r}")
        values[key] = value
    if "skipped_optimizers" in values:
        names = values["skipped_optimizers"]
        if not all(isinstance(n, str) for n in names):
            raise BadInput(f"target '{target}': simplify.skipped_optimizers must be a list "
                           "of onnxsim optimizer names (onnxsim --list-default-optimizers)")
        values["skipped_optimizers"] = tuple(names)
    if values.get("timeout", 1) <= 0:
        raise BadInput(f"target '{target}': simplify.timeout must be a positive number "
                       "of seconds")
    if values.get("check_n", 0) < 0 or values.get("memory_limit_mb", 1) <= 0:
        raise BadInput(f"target '{target}': simplify.check_n must be >= 0 and "
                       "simplify.memory_limit_mb > 0")
    if "timeout" in values:
        values["timeout"] = float(values["timeout"])
    return SimplifyOptions(**values)
