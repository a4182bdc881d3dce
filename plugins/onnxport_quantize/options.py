"""The `quantize` pass's settings (a target's options["quantize"]), checked by name, type
and value. Nothing here imports onnx or onnxruntime."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from onnxport.errors import BadInput

MODES = ("off", "on", "auto")
WEIGHT_TYPES = ("QInt8", "QUInt8")
PREFER = ("speed", "size")
# What onnxruntime's dynamic (IntegerOps) quantization can turn into integer kernels.
# Gemm is not in its registry, but quantize_dynamic rewrites every Gemm with alpha = beta
# = 1 and transA = 0 into MatMul (+ Add) first, so those are quantized as MatMul.
DYNAMIC_OPS = ("MatMul", "Gemm", "LSTM", "Attention", "Gather", "EmbedLayerNormalization",
               "Conv")
DEFAULT_OPS = ("MatMul", "Gemm", "LSTM", "Attention", "Gather")
# Op types people ask for that dynamic quantization cannot do, and why.
NOT_DYNAMIC = {
    "GRU": "onnxruntime has no dynamic INT8 GRU kernel (only LSTM has one, "
           "DynamicQuantizeLSTM); GRU stays fp32",
    "RNN": "onnxruntime has no dynamic INT8 RNN kernel; RNN stays fp32",
}
DEFAULT_MARGIN = 0.05  # INT8 must be at least 5% faster to be kept in mode auto


@dataclass(frozen=True)
class QuantizeOptions:
    mode: str = "auto"  # a target that lists the pass without a mode: INT8 where it pays
    weight_type: str = "QInt8"
    per_channel: bool = False
    # 7-bit weights unless a target knows its CPU has no U8S8 saturation (ARM64, VNNI):
    # accurate on every CPU, at the price of one bit of weight precision.
    reduce_range: bool = True
    op_types: tuple[str, ...] = DEFAULT_OPS
    prefer: str = "speed"
    pre_process: bool = True  # onnxruntime's quant_pre_process first
    speed_margin: float = DEFAULT_MARGIN
    threads: int = 1  # intra-op threads of the side-by-side timing in mode auto

    @property
    def conv_included(self) -> bool:
        return "Conv" in self.op_types


_TYPES: dict[str, tuple[type, ...]] = {
    "mode": (str,), "weight_type": (str,), "per_channel": (bool,), "reduce_range": (bool,),
    "op_types": (list, tuple), "prefer": (str,), "pre_process": (bool,),
    "speed_margin": (int, float), "threads": (int,),
}
_CHOICES = {"mode": MODES, "weight_type": WEIGHT_TYPES, "prefer": PREFER}


def mode_of(options: Mapping[str, Any]) -> str:
    """The mode a target's quantize options ask for, without validating the rest."""
    mode = options.get("mode", QuantizeOptions.mode)
    return mode if isinstance(mode, str) else "invalid"


def parse_options(options: Mapping[str, Any], target: str) -> QuantizeOptions:
    values: dict[str, Any] = {}
    for key, value in options.items():
        expected = _TYPES.get(key)
        if expected is None:
            raise BadInput(f"target '{target}': unknown option quantize.{key}",
                           "known options: " + ", ".join(sorted(_TYPES)))
        wrong_bool = isinstance(value, bool) and bool not in expected
        if not isinstance(value, expected) or wrong_bool:
            raise BadInput(f"target '{target}': quantize.{key} must be "
                           f"{' or '.join(t.__name__ for t in expected)}, not {value!r}")
        choices = _CHOICES.get(key)
        if choices and value not in choices:
            raise BadInput(f"target '{target}': quantize.{key} must be one of "
                           f"{', '.join(choices)}, not {value!r}")
        values[key] = value
    if "op_types" in values:
        values["op_types"] = _op_types(values["op_types"], target)
    if not 0 <= values.get("speed_margin", 0) < 1:
        raise BadInput(f"target '{target}': quantize.speed_margin must be in [0, 1), "
                       f"not {values['speed_margin']!r}")
    if values.get("threads", 1) < 1:
        raise BadInput(f"target '{target}': quantize.threads must be at least 1")
    return QuantizeOptions(**values)


def _op_types(names: Any, target: str) -> tuple[str, ...]:
    if not all(isinstance(n, str) for n in names):
        raise BadInput(f"target '{target}': quantize.op_types must be a list of ONNX op "
                       "types, e.g. [\"MatMul\", \"LSTM\"]")
    known = {n.lower(): n for n in (*DYNAMIC_OPS, *NOT_DYNAMIC)}
    for name in names:
        spelled = known.get(name.lower())
        if spelled is None:
            raise BadInput(
                f"target '{target}': quantize.op_types names '{name}', which onnxruntime's "
                "dynamic quantization cannot quantize",
                "it can quantize: " + ", ".join(DYNAMIC_OPS))
        if spelled != name:
            raise BadInput(f"target '{target}': quantize.op_types names '{name}'",
                           f"did you mean '{spelled}'?")
    return tuple(dict.fromkeys(names))
