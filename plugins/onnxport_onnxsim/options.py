"""The `simplify` pass's settings (a target's options["simplify"]), checked by name and type."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from onnxport.options import option, parse_options as parse

DEFAULT_TIMEOUT = 300.0  # seconds; onnxsim takes a few seconds on the reference models


@dataclass(frozen=True)
class SimplifyOptions:
    timeout: float = option(DEFAULT_TIMEOUT, above=0,
                            help="seconds before the child is stopped")
    check_n: int = option(0, minimum=0, help="onnxsim's own check on N random inputs "
                          "(the core verifies anyway)")
    skip_fuse_bn: bool = option(False, help="keep BatchNormalization apart from Conv")
    skipped_optimizers: tuple[str, ...] = option(
        (), help="onnxsim optimizer passes not to run (onnxsim --list-default-optimizers)")
    skip_constant_folding: bool = option(False, help="do not fold constants")
    skip_shape_inference: bool = option(False, help="do not infer shapes")
    memory_limit_mb: int | None = option(None, above=0, help="address-space cap of the "
                                         "child (Linux/macOS)")


def parse_options(options: Mapping[str, Any], target: str) -> SimplifyOptions:
    """The pass's settings; an unknown key or a wrong type is the user's to fix."""
    return parse(SimplifyOptions, options, where=f"target '{target}'", prefix="simplify.")
