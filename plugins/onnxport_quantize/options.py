"""The `quantize` pass's settings (a target's options["quantize"]), checked by name, type
and value. Nothing here imports onnx or onnxruntime."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from onnxport.pass_modes import MODES
from onnxport.options import option, parse_options as parse

WEIGHT_TYPES = ("QInt8", "QUInt8")
METHODS = ("dynamic", "static")
CALIBRATE_METHODS = ("minmax", "entropy", "percentile")
# onnxruntime's quantizer settings for both methods: MatMul quantized only on constant
# weights; a value shape inference gives no type (the output of a fused contrib op such
# as Attention) is float32 (TensorProto.FLOAT): without it, quantizing a fused
# transformer raises "Unable to find data type for weight_name=...".
ORT_EXTRA_OPTIONS = {"MatMulConstBOnly": True, "DefaultTensorType": 1}
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


def _op_types(names: tuple[str, ...]) -> tuple[str, ...]:
    """The op types asked for, each one dynamic quantization can do, spelled as ONNX."""
    known = {n.lower(): n for n in (*DYNAMIC_OPS, *NOT_DYNAMIC)}
    for name in names:
        spelled = known.get(name.lower())
        if spelled is None:
            raise ValueError(f"names '{name}', which onnxruntime's dynamic quantization "
                             "cannot quantize (it can quantize: "
                             + ", ".join(DYNAMIC_OPS) + ")")
        if spelled != name:
            raise ValueError(f"names '{name}'", f"did you mean '{spelled}'?")
    return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class QuantizeOptions:
    # a target that lists the pass without a mode: INT8 where it pays
    mode: str = option("auto", choices=MODES, help="off, on (INT8 ships within its "
                       "budget) or auto (an INT8 candidate competes with fp32: the "
                       "faster one that verifies ships)")
    weight_type: str = option("QInt8", choices=WEIGHT_TYPES, help="int8 or uint8 weights")
    per_channel: bool = option(False, help="one scale per output channel")
    # 7-bit weights unless a target knows its CPU has no U8S8 saturation (ARM64, VNNI):
    # accurate on every CPU, at the price of one bit of weight precision.
    reduce_range: bool = option(True, help="7-bit weights (no U8S8 saturation on x86 "
                                "without VNNI)")
    op_types: tuple[str, ...] = option(DEFAULT_OPS, convert=_op_types,
                                       help="op types to quantize (Conv only if listed)")
    pre_process: bool = option(True, help="onnxruntime's quant_pre_process first")
    method: str = option("dynamic", choices=METHODS,
                         help="dynamic (weights INT8, activations at run time) or static "
                              "(QDQ, activations calibrated ahead)")
    calibrate_method: str = option("minmax", choices=CALIBRATE_METHODS,
                                   help="static: how activation ranges are calibrated")
    calibration_samples: int = option(16, minimum=1,
                                      help="static: samples drawn for a synthetic "
                                           "calibration (without --calibration-data)")

    @property
    def conv_included(self) -> bool:
        return "Conv" in self.op_types



def parse_options(options: Mapping[str, Any], target: str) -> QuantizeOptions:
    return parse(QuantizeOptions, options, where=f"target '{target}'", prefix="quantize.")
