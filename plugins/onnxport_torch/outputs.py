"""A model's return value as the flat list of tensors ONNX sees, in the same order."""

from __future__ import annotations

from typing import Any

import torch


def flatten_outputs(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in flatten_outputs(v)]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in flatten_outputs(v)]
    raise TypeError(f"the model returned a {type(value).__name__}; ONNX outputs must be "
                    "tensors, or tuples, lists or dicts of tensors")


def output_keys(value: Any) -> list[str] | None:
    """A flat dict of tensors names its outputs; anything else does not."""
    if isinstance(value, dict) and all(isinstance(v, torch.Tensor) for v in value.values()):
        return [str(k) for k in value]
    return None
