"""An input or output of a model as the model declares it, and how arrays are described
in error messages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence, Union

import numpy as np

Dim = Union[int, str, None]
# onnxruntime's type strings; onnxruntime has no mapping of its own to numpy
_ORT_TYPES = {
    "tensor(float)": "float32", "tensor(double)": "float64", "tensor(float16)": "float16",
    "tensor(int8)": "int8", "tensor(int16)": "int16", "tensor(int32)": "int32",
    "tensor(int64)": "int64", "tensor(uint8)": "uint8", "tensor(uint16)": "uint16",
    "tensor(uint32)": "uint32", "tensor(uint64)": "uint64", "tensor(bool)": "bool",
    "tensor(string)": "object",
}


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of the model, as the model itself declares it.

    `shape` holds ints for fixed dimensions and names (str) for symbolic ones such as
    "batch"; None for a dimension without a name, or for the whole shape if unknown.
    `dtype` is the numpy dtype (None for a type numpy has no equivalent of).
    `batched` says the first axis is the batch axis, so one sample may be given without it:
    a symbolic first axis, or one fixed at 1 in a model whose batch is static (the
    manifest says so, or there is no manifest).
    """

    name: str
    shape: tuple[Dim, ...] | None
    dtype: np.dtype | None
    type: str
    batched: bool

    @property
    def sample_shape(self) -> tuple[Dim, ...] | None:
        """The shape of one sample: `shape` without the batch axis."""
        return self.shape[1:] if self.batched and self.shape else None

    def __str__(self) -> str:
        return describe(self.dtype.name if self.dtype is not None else self.type,
                         self.shape)


def describe(dtype: str, shape: Sequence[Dim] | None) -> str:
    if shape is None:
        return f"{dtype}[?]"
    return f"{dtype}[{', '.join('?' if d is None else str(d) for d in shape)}]"


def given_text(array: np.ndarray) -> str:
    kind = array.dtype.kind
    name = {"U": "str", "S": "bytes", "O": "object"}.get(kind, array.dtype.name)
    return describe(name, array.shape)


def spec_of(arg: Any, batch_axis_frozen: bool) -> TensorSpec:
    shape = arg.shape
    shape = None if shape is None else tuple(
        d if isinstance(d, (int, str)) or d is None else None for d in shape)
    name = _ORT_TYPES.get(arg.type)
    dtype = np.dtype(name) if name else None
    batched = bool(shape) and (not isinstance(shape[0], int)
                               or (shape[0] == 1 and batch_axis_frozen))
    return TensorSpec(arg.name, shape, dtype, arg.type, batched)
