"""The inputs of a diagnosis: exactly those verification used (same seed, shapes and
ranges, or the same rows of the user's data), or seeded inputs for a bare file."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from onnxport.artifact.modelinfo import TensorInfo, read_model_info
from onnxport.errors import BadInput
from onnxport.flow.inputs import load_npz, random_inputs


def recorded_feeds(batch: Mapping[str, Any], settings, dynamic_batch: bool
                   ) -> dict[str, np.ndarray]:
    """The exact inputs verification used for one recorded batch (same seed, shapes,
    sizes of the dynamic axes, ranges, or the same rows of the user's data)."""
    label = batch["label"]
    described = batch["inputs"]
    axes = getattr(settings, "dynamic_axes", None) or {}
    infos, sizes = [], {}
    for name, d in described.items():
        shape = list(d["shape"])
        dims: list = (["batch"] + shape[1:]) if dynamic_batch else list(shape)
        for axis, axis_name in axes.get(name, {}).items():
            if axis < len(shape):
                dims[axis] = axis_name
                sizes[axis_name] = int(shape[axis])
        infos.append(TensorInfo(name, dims, d["dtype"]))
    if label.startswith("data"):
        if settings.data is None:
            raise BadInput("the conversion verified on user data (--data) that was not "
                           "recorded", "pass --data FILE.npz")
        data = load_npz(settings.data, infos)
        return {k: v[:1] for k, v in data.items()} if label == "data[:1]" else data
    rows = next(iter(described.values()))["shape"][0] if described else None
    return random_inputs(infos, rows if dynamic_batch else None, settings.seed,
                         {n: d["shape"] for n, d in described.items()},
                         settings.input_ranges, sizes)


def model_feeds(path: Path, batch: int, seed: int, data: Path | None,
                example_shapes: Mapping[str, Sequence[int]] | None = None
                ) -> dict[str, np.ndarray]:
    """Seeded inputs for a bare ONNX file: its declared shapes, `batch` on a free first
    axis, the source's example sizes on other free axes."""
    infos = read_model_info(path).inputs
    if data is not None:
        return load_npz(data, infos)
    return random_inputs(infos, batch, seed, example_shapes or {}, {})
