"""The input data verification feeds to both models: seeded random arrays or user data."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping, Sequence

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


def parse_dynamic_axis(text: str) -> tuple[str, int, str]:
    """`NAME:AXIS[=AXIS_NAME]` (`--dynamic input_ids:1=sequence`) -> (input, axis, axis
    name); without `=AXIS_NAME` the axis is named `NAME_axisAXIS`, varying alone."""
    spec, sep, label = text.strip().partition("=")
    name, colon, axis_text = spec.rpartition(":")
    try:
        axis = int(axis_text)
    except ValueError:
        axis = None
    if not colon or not name or axis is None or (sep and not label.strip()):
        raise BadInput(f"--dynamic {text!r} is not NAME:AXIS[=AXIS_NAME]",
                       "write it like input_ids:1=sequence (axes count from 0; inputs "
                       "sharing an axis name vary together)")
    label = label.strip() if sep else _default_axis_name(name, axis)
    _check_axis_name(label, f"--dynamic {text!r}")
    return name, axis, label


def dynamic_axes_from(items: Sequence[str]) -> dict[str, dict[int, str]]:
    """Every `--dynamic NAME:AXIS[=AXIS_NAME]` of a command line, by input."""
    axes: dict[str, dict[int, str]] = {}
    for item in items:
        name, axis, label = parse_dynamic_axis(item)
        axes.setdefault(name, {})[axis] = label
    return axes


def normalized_dynamic_axes(value: Mapping[str, Mapping[Any, str]] | None
                            ) -> dict[str, dict[int, str]]:
    """`dynamic_axes` as the Python API, a fleet file or JSON give them (axes may be
    strings there: TOML and JSON keys are), as {input: {axis: name}}; the form is
    checked here, the inputs and ranks once the model is loaded."""
    if not value:
        return {}
    if not isinstance(value, Mapping):
        raise BadInput(f"dynamic_axes must map input names to {{axis: name}}, not "
                       f"{value!r}", 'write it like {"input_ids": {1: "sequence"}}')
    axes: dict[str, dict[int, str]] = {}
    for name, per_input in value.items():
        if not isinstance(name, str) or not name or not isinstance(per_input, Mapping):
            raise BadInput(f"dynamic_axes[{name!r}] must be an {{axis: name}} mapping, "
                           f"not {per_input!r}", 'write it like {"input_ids": {1: '
                           '"sequence"}}')
        for axis, label in per_input.items():
            try:
                if isinstance(axis, bool) or float(axis) != int(axis):
                    raise ValueError(axis)
                index = int(axis)
            except (TypeError, ValueError):
                raise BadInput(f"dynamic_axes[{name!r}]: axis {axis!r} is not a whole "
                               "number", "axes count from 0 (-1 is the last)") from None
            if not isinstance(label, str):
                raise BadInput(f"dynamic_axes[{name!r}][{axis!r}]: the axis name must "
                               f"be a string, not {label!r}")
            _check_axis_name(label, f"dynamic_axes[{name!r}][{axis!r}]")
            axes.setdefault(name, {})[index] = label
    return axes


def _default_axis_name(name: str, axis: int) -> str:
    """`frames_axis1` (`frames_axis_1` for -1): a name of its own, so the axis varies
    alone."""
    label = re.sub(r"\W", "_", f"{name}_axis{axis}".replace("-", "_"))
    return label if re.match(r"[A-Za-z_]", label) else f"_{label}"


def _check_axis_name(label: str, where: str) -> None:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", label):
        raise BadInput(f"{where}: the axis name {label!r} is not a name",
                       "use letters, digits and _ (e.g. sequence, time, height)")


def checked_dynamic_axes(axes: Mapping[str, Mapping[int, str]],
                         shapes: Mapping[str, Sequence[int]], dynamic_batch: bool
                         ) -> dict[str, dict[int, str]]:
    """The declared axes against the model's inputs (their example shapes, by name):
    every input exists, every axis is inside its rank (a negative one counts from the
    end), axis 0 is left to the batch when the batch is dynamic, and inputs that share
    an axis name have the same size on it. Returns them with axes counted from 0."""
    checked: dict[str, dict[int, str]] = {}
    known = ", ".join(shapes) or "none"
    for name, per_input in normalized_dynamic_axes(axes).items():
        if name not in shapes:
            raise BadInput(f"dynamic axis for {name!r}: the model has no input {name!r}",
                           f"its inputs are: {known}")
        rank = len(shapes[name])
        for axis, label in per_input.items():
            index = axis + rank if axis < 0 else axis
            if not 0 <= index < rank:
                raise BadInput(f"dynamic axis {name}:{axis}: input {name} has "
                               f"{rank} ax{'i' if rank == 1 else 'e'}s (example shape "
                               f"{list(shapes[name])})",
                               f"axes count from 0 to {rank - 1}" if rank else
                               f"{name} is a scalar: it has no axis to vary")
            if dynamic_batch and index == 0:
                raise BadInput(f"dynamic axis {name}:{axis}: axis 0 is the batch, which "
                               "is dynamic already",
                               "declare the other axes, or pass --static-batch to let "
                               "axis 0 vary under a name of your own")
            if dynamic_batch and label == "batch":
                raise BadInput(f"dynamic axis {name}:{axis}: the name 'batch' is the "
                               "batch axis's", "give this axis another name")
            checked.setdefault(name, {})[index] = label
    sizes: dict[str, dict[str, int]] = {}
    for name, per_input in checked.items():
        for axis, label in per_input.items():
            sizes.setdefault(label, {})[f"{name}:{axis}"] = int(shapes[name][axis])
    for label, found in sizes.items():
        if len(set(found.values())) > 1:
            listed = ", ".join(f"{k} is {v}" for k, v in found.items())
            raise BadInput(f"the axes named {label!r} vary together, but their example "
                           f"sizes differ ({listed})",
                           "give those inputs the same size on that axis in the example, "
                           "or name the axes apart")
    return checked


def other_size(size: int) -> int:
    """The second size a dynamic axis is verified at: half the example's (so it stays
    inside a model's maximum length and keeps even sizes even), or one more when the
    example is below 4."""
    return size // 2 if size >= 4 else size + 1


def axis_sizes_for(axes: Mapping[str, Mapping[int, str]],
                   shapes: Mapping[str, Sequence[int]]) -> dict[str, tuple[int, int]]:
    """The two sizes each named axis is verified at: the example's, then `other_size`."""
    sizes: dict[str, tuple[int, int]] = {}
    for name, per_input in axes.items():
        for axis, label in per_input.items():
            size = int(shapes[name][axis])
            sizes.setdefault(label, (size, other_size(size)))
    return sizes


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


def with_example_ranges(settings, examples: Mapping[str, np.ndarray],
                        dynamic_axes: Mapping[str, Mapping[int, str]] | None = None):
    """`settings` completed from the loaded model: integer inputs' ranges from the
    examples, where the user gave none for that input by name (a range for every input,
    `*`, is for the floats); and the dynamic axes verification varies (the backend's
    `LoadedModel.dynamic_axes` when given, else the user's), checked against the
    examples, with the two sizes each is verified at (unless recorded already)."""
    import dataclasses

    changes: dict[str, Any] = {}
    derived = {k: v for k, v in example_ranges(examples).items()
               if k not in settings.input_ranges}
    if derived:
        changes["input_ranges"] = {**settings.input_ranges, **derived}
    declared = settings.dynamic_axes
    if dynamic_axes:
        declared = {**{k: dict(v) for k, v in declared.items()}}
        for name, per_input in dynamic_axes.items():
            declared.setdefault(name, {}).update(per_input)
    if declared:
        shapes = {k: tuple(np.shape(v)) for k, v in examples.items()}
        # axis 0 against the batch is checked where the batch is known (Reference)
        axes = checked_dynamic_axes(declared, shapes, dynamic_batch=False)
        changes["dynamic_axes"] = axes
        changes["axis_sizes"] = {**axis_sizes_for(axes, shapes),
                                 **dict(settings.axis_sizes)}
    return dataclasses.replace(settings, **changes) if changes else settings


def random_inputs(
    inputs: Sequence[TensorInfo],
    batch: int | None,
    seed: int,
    example_shapes: Mapping[str, Sequence[int]],
    ranges: Mapping[str, tuple[float, float]],
    sizes: Mapping[str, int] | None = None,
) -> dict[str, np.ndarray]:
    """Seeded uniform data for each input; the same seed, batch and sizes give the same
    arrays.

    Symbolic dimensions take their size from `sizes` by name (a dynamic axis), else
    `batch` on the first axis, else the example's size.
    """
    key = [seed, batch or 0, *(int(sizes[k]) for k in sorted(sizes or {}))]
    rng = np.random.default_rng(key)
    feeds = {}
    for info in inputs:
        shape = concrete_shape(info, batch, example_shapes.get(info.name), sizes)
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
                   example: Sequence[int] | None,
                   sizes: Mapping[str, int] | None = None) -> tuple[int, ...]:
    shape = []
    for axis, dim in enumerate(info.shape):
        if isinstance(dim, int):
            shape.append(dim)
        elif sizes and dim in sizes:
            shape.append(int(sizes[dim]))
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
