"""The input data verification feeds to both models: seeded random arrays or user data."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from onnxport.errors import BadInput
from onnxport.artifact.modelinfo import TensorInfo
from onnxport.records import InputSpec

DEFAULT_RANGE = (-1.0, 1.0)
DEFAULT_INT_RANGE = (0, 10)
_SPEC = re.compile(r"^(?P<name>[^:]+):(?P<shape>\d+(?:[x,]\d+)*)(?::(?P<dtype>\w+))?$")


def parse_input_spec(text: str) -> InputSpec:
    """`NAME:SHAPE[:DTYPE]`, e.g. `sensors:2x20x25` or `ids:1x16:int64`."""
    match = _SPEC.match(text.strip())
    if not match:
        raise BadInput(f"--input {text!r} is not NAME:SHAPE[:DTYPE]",
                       "write it like sensors:2x20x25 or ids:1x16:int64")
    dtype = match["dtype"] or "float32"
    try:
        np.dtype(dtype)
    except TypeError as exc:
        raise BadInput(f"--input {text!r}: unknown dtype {dtype!r}",
                       "use a numpy dtype name such as float32 or int64") from exc
    shape = tuple(int(d) for d in re.split(r"[x,]", match["shape"]))
    return InputSpec(name=match["name"], shape=shape, dtype=dtype)


def parse_range(text: str) -> tuple[str, tuple[float, float]]:
    """`LOW,HIGH` (every input) or `NAME=LOW,HIGH` (one input)."""
    name, _, bounds = text.rpartition("=")
    try:
        low, high = (float(v) for v in bounds.split(","))
    except ValueError as exc:
        raise BadInput(f"--input-range {text!r} is not [NAME=]LOW,HIGH",
                       "write it like -1,1 or costmap_input=0,1") from exc
    if not low < high:
        raise BadInput(f"--input-range {text!r}: LOW must be below HIGH")
    return name or "*", (low, high)


def example_ranges(examples: Mapping[str, np.ndarray]) -> dict[str, tuple[float, float]]:
    """Ranges for the integer inputs, from the example inputs the user gave: token ids
    stay within the ids the example uses, and an input whose examples are all one value
    (an attention mask of ones, token types of zeros) keeps that value, so a random
    draw never masks a whole row or picks an id past the vocabulary."""
    ranges = {}
    for name, value in examples.items():
        array = np.asarray(value)
        if array.size and array.dtype.kind in "iu":
            ranges[name] = (float(array.min()), float(array.max()) + 1)
    return ranges


def with_example_ranges(settings, examples: Mapping[str, np.ndarray]):
    """`settings` with integer inputs' ranges from the examples, where the user gave
    none for that input by name (a range for every input, `*`, is for the floats)."""
    import dataclasses

    derived = {k: v for k, v in example_ranges(examples).items()
               if k not in settings.input_ranges}
    if not derived:
        return settings
    return dataclasses.replace(settings, input_ranges={**settings.input_ranges, **derived})


def random_inputs(
    inputs: Sequence[TensorInfo],
    batch: int | None,
    seed: int,
    example_shapes: Mapping[str, Sequence[int]],
    ranges: Mapping[str, tuple[float, float]],
) -> dict[str, np.ndarray]:
    """Seeded uniform data for each input; the same seed and batch give the same arrays.

    Symbolic dimensions take `batch` on the first axis and the example's size elsewhere.
    """
    rng = np.random.default_rng([seed, batch or 0])
    feeds = {}
    for info in inputs:
        shape = concrete_shape(info, batch, example_shapes.get(info.name))
        dtype = np.dtype(info.dtype if info.dtype != "bfloat16" else "float32")
        if dtype.kind == "f":
            low, high = ranges.get(info.name, ranges.get("*", DEFAULT_RANGE))
            feeds[info.name] = rng.uniform(low, high, size=shape).astype(dtype)
        elif dtype.kind == "b":
            feeds[info.name] = rng.integers(0, 2, size=shape).astype(bool)
        else:
            low, high = ranges.get(info.name, ranges.get("*", DEFAULT_INT_RANGE))
            feeds[info.name] = rng.integers(int(low), int(high), size=shape).astype(dtype)
    return feeds


def concrete_shape(info: TensorInfo, batch: int | None,
                   example: Sequence[int] | None) -> tuple[int, ...]:
    shape = []
    for axis, dim in enumerate(info.shape):
        if isinstance(dim, int):
            shape.append(dim)
        elif axis == 0 and batch is not None:
            shape.append(batch)
        elif example is not None and axis < len(example):
            shape.append(int(example[axis]))
        else:
            raise BadInput(
                f"input {info.name!r} has a free dimension {dim!r} at axis {axis} and no "
                "example size for it", "give --input NAME:SHAPE or --data FILE.npz")
    return tuple(shape)


def load_npz(path: Path, inputs: Sequence[TensorInfo]) -> dict[str, np.ndarray]:
    """User data for verification: one array per input name, safely (no pickles)."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"--data {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as archive:
            data = {name: archive[name] for name in archive.files}
    except Exception as exc:
        raise BadInput(f"--data {path} is not a readable .npz file ({exc})") from exc
    expected = [info.name for info in inputs]
    missing = [n for n in expected if n not in data]
    if missing:
        raise BadInput(f"--data {path} has no array for input(s) {', '.join(missing)}",
                       f"it has {', '.join(sorted(data)) or 'nothing'}; "
                       f"save one array per input name: {', '.join(expected)}")
    empty = [n for n in expected if data[n].size == 0]
    if empty:
        raise BadInput(f"--data {path}: the array for {empty[0]} is empty "
                       f"(shape {list(data[empty[0]].shape)})",
                       "verification needs at least one row of every input")
    return {n: data[n].astype(info.dtype, copy=False) for n, info in
            zip(expected, inputs)}


def describe_inputs(feeds: Mapping[str, np.ndarray]) -> dict[str, dict]:
    """Shapes, dtypes and value ranges, for the report."""
    return {
        name: {"shape": list(a.shape), "dtype": str(a.dtype),
               "min": float(a.min()) if a.size else None,
               "max": float(a.max()) if a.size else None}
        for name, a in feeds.items()
    }
