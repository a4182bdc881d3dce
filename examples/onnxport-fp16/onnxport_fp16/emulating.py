"""Float16 arithmetic emulated on a CPU, for machines where the verification cannot see
it.

onnxruntime's CPU provider has float16 kernels for few ops (data movement, Clip, Min,
Max, LayerNormalization in 1.32 on x86-64): it computes the others in float32 between
Casts it inserts, and removes those Casts between two such ops. So the float16 model it
runs keeps float32 values inside: a layer that overflows float16's +-65504 on a GPU
(inf, then NaN) gives finite, "correct" numbers there, and the error it shows is that of
the float16 weights alone. The emulation is the float16 model made float32 again, with
every value the float16 model holds in float16 rounded through a Cast to float16 and
back: ops compute in float32 and round their result, as a GPU's float16 kernels do
(they accumulate in float32). Run on random inputs, it shows overflow and the error of
float16 activations before the model ships.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import AttributeProto, helper, numpy_helper

from onnxport.records import Tolerance

from .converting import FLOAT, FLOAT16, _all_names, _unique, value_types

INPUT_RANGE = (-1.0, 1.0)  # onnxport's own default for random verification inputs
SEED = 0
BATCH = 2  # the first symbolic axis; other symbolic axes get 1


@dataclass
class Emulation:
    passed: bool
    problem: str = ""
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    inputs: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "problem": self.problem, "inputs": self.inputs,
                "outputs": self.outputs}


def emulation_model(fp16: onnx.ModelProto) -> onnx.ModelProto:
    """A float32 copy of the float16 model that rounds every float16 value to float16."""
    model = onnx.ModelProto()
    model.CopyFrom(fp16)
    types = value_types(onnx.shape_inference.infer_shapes(model, strict_mode=False))
    graph = model.graph
    for init in graph.initializer:
        if init.data_type == FLOAT16:
            init.CopyFrom(numpy_helper.from_array(
                numpy_helper.to_array(init).astype(np.float32), init.name))
    for value in [*graph.input, *graph.output, *graph.value_info]:
        if value.type.tensor_type.elem_type == FLOAT16:
            value.type.tensor_type.elem_type = FLOAT
    taken = _all_names(graph)
    nodes = []
    for node in graph.node:
        _widen(node)
        nodes.append(node)
        for position, name in enumerate(node.output):
            if types.get(name) != FLOAT16:
                continue
            wide, half = _unique(f"{name}_wide", taken), _unique(f"{name}_half", taken)
            node.output[position] = wide
            nodes += [helper.make_node("Cast", [wide], [half], to=FLOAT16,
                                       name=_unique(f"Cast_{half}", taken)),
                      helper.make_node("Cast", [half], [name], to=FLOAT,
                                       name=_unique(f"Cast_{name}", taken))]
    del graph.node[:]
    graph.node.extend(nodes)
    return model


def _widen(node) -> None:
    for attr in node.attribute:
        if attr.type == AttributeProto.TENSOR and attr.t.data_type == FLOAT16:
            attr.t.CopyFrom(numpy_helper.from_array(
                numpy_helper.to_array(attr.t).astype(np.float32), attr.t.name))
        elif attr.name in ("to", "dtype", "output_datatype") and \
                attr.type == AttributeProto.INT and attr.i == FLOAT16:
            attr.i = FLOAT


def emulate(fp32_path: Path, fp16: onnx.ModelProto, work: Path,
            tolerance: Tolerance) -> Emulation:
    """Run the float32 model and the emulation on the same random inputs and hold the
    emulation to the float16 budget; raises if either cannot run."""
    import onnxruntime as ort

    path = work / "fp16-emulation.onnx"
    onnx.save(emulation_model(fp16), str(path))
    try:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        reference = ort.InferenceSession(str(fp32_path), options,
                                         providers=["CPUExecutionProvider"])
        emulated = ort.InferenceSession(str(path), options,
                                        providers=["CPUExecutionProvider"])
        feeds = random_feeds(reference)
        names = [o.name for o in reference.get_outputs()]
        expected = reference.run(names, feeds)
        got = emulated.run(names, feeds)
    finally:
        path.unlink(missing_ok=True)
    shapes = ", ".join(f"{k}{list(v.shape)}" for k, v in feeds.items())
    result = Emulation(passed=True, inputs=(
        f"uniform in [{INPUT_RANGE[0]:g}, {INPUT_RANGE[1]:g}), seed {SEED}, first "
        f"symbolic axis {BATCH}, others 1: {shapes}"))
    for name, ref, out in zip(names, expected, got):
        figures, problem = compare(np.asarray(out), np.asarray(ref), tolerance)
        result.outputs[name] = figures
        if problem and result.passed:
            result.passed, result.problem = False, f"output {name}: {problem}"
    return result


def random_feeds(session) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(SEED)
    dtypes = {"tensor(float)": np.float32, "tensor(double)": np.float64,
              "tensor(float16)": np.float16, "tensor(int64)": np.int64,
              "tensor(int32)": np.int32, "tensor(bool)": np.bool_}
    feeds = {}
    for spec in session.get_inputs():
        shape, symbolic = [], 0
        for dim in spec.shape:
            if isinstance(dim, int) and dim > 0:
                shape.append(dim)
            else:
                shape.append(BATCH if symbolic == 0 else 1)
                symbolic += 1
        dtype = np.dtype(dtypes.get(spec.type, np.float32))
        if dtype.kind == "f":
            feeds[spec.name] = rng.uniform(*INPUT_RANGE, shape).astype(dtype)
        elif dtype.kind == "b":
            feeds[spec.name] = rng.integers(0, 2, shape).astype(bool)
        else:
            feeds[spec.name] = rng.integers(0, 10, shape).astype(dtype)
    return feeds


def compare(actual: np.ndarray, expected: np.ndarray,
            tolerance: Tolerance) -> tuple[dict[str, Any], str]:
    """onnxport's rule (records.Tolerance): |a - e| <= atol + rtol |e| per element,
    NaN/inf only where the reference has them, then cosine and share of the range."""
    a, e = actual.astype(np.float64), expected.astype(np.float64)
    if a.shape != e.shape:
        return {"shape": list(a.shape)}, f"shape {list(a.shape)}, expected {list(e.shape)}"
    finite = np.isfinite(a) & np.isfinite(e)
    new_special = int(np.count_nonzero(~np.isfinite(a) & np.isfinite(e)))
    diff = np.where(finite, np.abs(a - e), 0.0)
    max_abs = float(diff.max()) if a.size else 0.0
    norm = np.linalg.norm(a[finite]) * np.linalg.norm(e[finite])
    cosine = float(a[finite] @ e[finite] / norm) if norm else 1.0
    figures = {"max_abs": max_abs, "cosine": round(cosine, 6),
               "new_nan_or_inf": new_special}
    if new_special:
        return figures, (f"{new_special} of {a.size} values are inf or NaN in float16 "
                         "arithmetic (float16 overflows past +-65504) where float32 has "
                         "none")
    with np.errstate(invalid="ignore"):
        close = np.isclose(a, e, atol=tolerance.atol, rtol=tolerance.rtol, equal_nan=True)
    if not close.all():
        return figures, (f"{int(np.count_nonzero(~close))} of {a.size} values differ by "
                         f"more than atol {tolerance.atol:g} + rtol {tolerance.rtol:g} x "
                         f"|float32| (max abs {max_abs:.3g})")
    if tolerance.min_cosine is not None and cosine < tolerance.min_cosine:
        return figures, f"cosine similarity {cosine:.6f} is below {tolerance.min_cosine}"
    if tolerance.max_abs_of_range is not None and e[finite].size:
        span = float(e[finite].max() - e[finite].min()) or float(np.abs(e[finite]).max())
        if max_abs > tolerance.max_abs_of_range * span:
            return figures, (f"max abs {max_abs:.3g} is above "
                             f"{tolerance.max_abs_of_range:g} x the range {span:.3g}")
    return figures, ""
