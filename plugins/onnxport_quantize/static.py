"""Static INT8 in QDQ format: activations calibrated ahead on the user's data (or, with
a warning, on synthetic inputs), weights per tensor or per channel.

QDQ keeps the graph's float interface and puts QuantizeLinear/DequantizeLinear pairs
around the quantized ops; onnxruntime fuses them into integer kernels (QLinearConv,
QLinearMatMul) where the provider has them: the XNNPACK and VNNI paths run CNNs this way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np

from onnxport.errors import BadInput

from .options import ORT_EXTRA_OPTIONS, QuantizeOptions

STATIC_OPS = ("Conv", "MatMul", "Gemm")  # what QDQ calibration handles well here


def static_op_types(options: QuantizeOptions) -> list[str]:
    """Conv, MatMul and Gemm: Conv is the point of static INT8 (ConvInteger, the dynamic
    path's Conv, is slow; QLinearConv is not)."""
    from .options import DEFAULT_OPS

    asked = set(options.op_types) | ({"Conv"} if options.op_types == DEFAULT_OPS else set())
    return sorted(op for op in asked if op in STATIC_OPS)


def quantize_static_qdq(prepared: Path, output: Path, options: QuantizeOptions,
                        calibration: Path | None, external: bool,
                        exclude: list[str]) -> tuple[dict[str, Any], list[str]]:
    """Write the QDQ model; returns settings for the report and warnings."""
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    reader, described = _reader(prepared, calibration, options.calibration_samples)
    warnings = []
    if calibration is None:
        warnings.append(f"static INT8 was calibrated on {options.calibration_samples} "
                        "synthetic random inputs: its accuracy on real data is unknown; "
                        "give --calibration-data with real inputs")
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[options.calibrate_method]
    quantize_static(
        str(prepared), str(output), reader, quant_format=QuantFormat.QDQ,
        op_types_to_quantize=static_op_types(options), per_channel=options.per_channel,
        reduce_range=options.reduce_range, activation_type=QuantType.QUInt8,
        weight_type=QuantType[options.weight_type], nodes_to_exclude=exclude,
        calibrate_method=method, use_external_data_format=external,
        extra_options=dict(ORT_EXTRA_OPTIONS))
    return {"calibration": described, "calibrate_method": options.calibrate_method}, warnings


def _reader(model: Path, calibration: Path | None, samples: int):
    from onnxruntime import InferenceSession
    from onnxruntime.quantization import CalibrationDataReader

    session = InferenceSession(str(model), providers=["CPUExecutionProvider"])
    specs = session.get_inputs()
    if calibration is not None:
        batches = list(_from_files(calibration, [s.name for s in specs]))
        described = {"source": str(calibration), "samples": len(batches)}
    else:
        batches = list(_synthetic(specs, samples))
        described = {"source": "synthetic", "samples": len(batches)}
    del session

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._items = iter(batches)

        def get_next(self):
            return next(self._items, None)

        def rewind(self):
            self._items = iter(batches)

    return Reader(), described


def _from_files(path: Path, names: list[str]) -> Iterator[dict[str, np.ndarray]]:
    """One feed per row of each .npz (a directory: every .npz in it, sorted)."""
    path = Path(path)
    files = sorted(path.glob("*.npz")) if path.is_dir() else [path]
    if not files or not all(f.is_file() for f in files):
        raise BadInput(f"--calibration-data {path}: no .npz file there",
                       "give an .npz with one array per input name, or a directory of them")
    for file in files:
        try:
            with np.load(file, allow_pickle=False) as archive:
                arrays = {name: archive[name] for name in archive.files}
        except Exception as exc:
            raise BadInput(f"--calibration-data {file} is not a readable .npz ({exc})") \
                from exc
        missing = [n for n in names if n not in arrays]
        if missing:
            raise BadInput(f"--calibration-data {file} has no array for input(s) "
                           f"{', '.join(missing)}", f"it has {', '.join(sorted(arrays))}")
        rows = min(len(arrays[n]) for n in names)
        if rows == 0:
            raise BadInput(f"--calibration-data {file}: the arrays are empty")
        for row in range(rows):
            yield {n: arrays[n][row:row + 1] for n in names}


_NUMPY = {"tensor(float)": np.float32, "tensor(double)": np.float64,
          "tensor(float16)": np.float16, "tensor(int64)": np.int64,
          "tensor(int32)": np.int32}


def _synthetic(specs, samples: int) -> Iterator[dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    for _ in range(samples):
        feed = {}
        for spec in specs:
            shape = [d if isinstance(d, int) and d > 0 else 1 for d in spec.shape]
            dtype = _NUMPY.get(spec.type, np.float32)
            feed[spec.name] = (rng.uniform(-1, 1, shape).astype(dtype)
                               if np.dtype(dtype).kind == "f" else np.zeros(shape, dtype))
        yield feed
