"""The `fp16` pass's settings (a target's options["fp16"]) and the op types it keeps in
float32 by default. Checked by name, type and value, so a typo in onnxport.toml is an
error that names the key instead of a setting silently ignored. Imports no onnx."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from onnxport.errors import BadInput
from onnxport.records import Tolerance

# Op types kept in float32 (Casts around them), with the reason. The list is
# onnxconverter-common's DEFAULT_OP_BLOCK_LIST (what onnxruntime's own float16 tool
# also keeps, less Resize there), plus the random generators and QDQ ops whose output
# type is an attribute or a scale's type.
BLOCKED_OPS: dict[str, str] = {
    **dict.fromkeys(("NonMaxSuppression", "RoiAlign", "TopK"),
                    "selects by value: fp16 rounding makes ties and changes which "
                    "boxes or elements are picked"),
    **dict.fromkeys(("Range", "CumSum"),
                    "accumulates: float16 has no integer above 2048 exactly and "
                    "sums drift"),
    **dict.fromkeys(("Min", "Max"), "kept float32 by onnxconverter-common's and "
                    "onnxruntime's float16 tools alike"),
    **dict.fromkeys(("Resize", "Upsample"),
                    "its scales input must stay float32"),
    **dict.fromkeys(("RandomNormal", "RandomNormalLike", "RandomUniform",
                     "RandomUniformLike", "Bernoulli", "Multinomial"),
                    "random generator: its output type is an attribute"),
    **dict.fromkeys(("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"),
                    "quantization scales stay float32"),
}
# ai.onnx.ml ops are in onnxconverter-common's list too; here every op outside the
# default domain is kept float32 (its fp16 support is unknown), which covers them.

# float16 keeps 11 significant bits (relative rounding 4.9e-4) and errors add up over
# layers, in proportion to the values inside the model rather than to the output's
# spread: per element atol + rtol 1e-2, and cosine >= 0.999 against a model that is
# off everywhere by less than atol (small outputs). No bound on the share of the
# output's range: a near-constant output (an uncertainty head) has a range far below
# its float16 rounding. On the reference models float16 stays 20-500x inside it.
DEFAULT_TOLERANCE = Tolerance(atol=1e-2, rtol=1e-2, min_cosine=0.999)


@dataclass(frozen=True)
class Fp16Options:
    block_ops: tuple[str, ...] = ()  # kept float32 in addition to BLOCKED_OPS
    allow_ops: tuple[str, ...] = ()  # taken out of BLOCKED_OPS: converted anyway
    block_nodes: tuple[str, ...] = ()  # node names kept float32
    required: bool = False  # True: an fp16 model that fails verification fails the run
    tolerance: Tolerance = DEFAULT_TOLERANCE

    def blocked_ops(self) -> dict[str, str]:
        blocked = {op: why for op, why in BLOCKED_OPS.items() if op not in self.allow_ops}
        blocked.update({op: "listed in fp16.block_ops" for op in self.block_ops})
        return blocked


_LISTS = ("block_ops", "allow_ops", "block_nodes")
_NUMBERS = ("atol", "rtol", "min_cosine", "max_abs_of_range")
_KNOWN = (*_LISTS, "required", *_NUMBERS)


def parse_options(options: Mapping[str, Any], target: str) -> Fp16Options:
    """The pass's settings; an unknown key or a wrong type is the user's to fix."""
    values: dict[str, Any] = {}
    budget: dict[str, float] = {}
    for key, value in options.items():
        if key not in _KNOWN:
            raise BadInput(f"target '{target}': unknown option fp16.{key}",
                           "known options: " + ", ".join(sorted(_KNOWN)))
        if key in _LISTS:
            if not isinstance(value, (list, tuple)) or \
                    not all(isinstance(v, str) and v for v in value):
                raise BadInput(f"target '{target}': fp16.{key} must be a list of "
                               f"{'node names' if key == 'block_nodes' else 'op types'}"
                               f", not {value!r}", 'e.g. ["Softmax", "LayerNormalization"]')
            values[key] = tuple(value)
        elif key == "required":
            if not isinstance(value, bool):
                raise BadInput(f"target '{target}': fp16.required must be true or false, "
                               f"not {value!r}")
            values[key] = value
        else:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                    math.isnan(value) or value < 0:
                raise BadInput(f"target '{target}': fp16.{key} must be a number >= 0, "
                               f"not {value!r}")
            budget[key] = float(value)
    if budget.get("min_cosine", 0.0) > 1:
        raise BadInput(f"target '{target}': fp16.min_cosine must be at most 1")
    if budget:
        values["tolerance"] = Tolerance(**{**DEFAULT_TOLERANCE.__dict__, **budget})
    return Fp16Options(**values)
