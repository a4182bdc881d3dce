"""Built-in plugin: the `quantize` pass, INT8 dynamic quantization with onnxruntime.

onnxruntime's `quant_pre_process` (shape inference, basic graph optimisation), then
`quantize_dynamic`: weights become int8 (or uint8), activations are quantized to uint8
at run time. The target's options["quantize"] say how (see docs/targets.md):

- mode: "off" (the pass does not apply), "on" (INT8 ships; the run fails if it misses
  the target's INT8 budget), "auto" (INT8 ships only if it meets the budget AND, measured
  side by side on this machine, is faster than the fp32 model, or smaller when
  prefer = "size"; otherwise the fp32 model goes on and the report says why)
- weight_type ("QInt8" | "QUInt8"), per_channel, reduce_range, op_types (Conv only if
  listed), prefer ("speed" | "size"), pre_process, speed_margin, threads.

A model with nothing to quantize is never shipped as "INT8": mode "on" is an error
naming the op types looked for, mode "auto" skips the pass with that reason. Importing
this module imports neither onnx nor onnxruntime.
"""

from __future__ import annotations

from onnxport.host import hookimpl
from onnxport.records import Pass, Requirements, Target

from .options import QuantizeOptions, mode_of


def mode(target: Target) -> str:
    """The quantization mode a target asks for; "auto" when it lists the pass but sets
    no mode (INT8 only where it pays off)."""
    return mode_of(target.options.get("quantize", {}))


def _run(context):
    from .quantizing import quantize

    return quantize(context)


def _accept(previous_path, candidate_path, context):
    from .deciding import accept

    return accept(previous_path, candidate_path, context)


@hookimpl
def onnxport_register_passes(register):
    register(Pass(
        options=QuantizeOptions,
        name="quantize",
        description="INT8 dynamic quantization (onnxruntime quant_pre_process + "
                    "quantize_dynamic) with the target's settings; mode on ships INT8 "
                    "within its budget, auto only where it also measures faster (or "
                    "smaller, prefer = size) on this machine",
        run=_run,
        applies=lambda target: mode(target) != "off",
        optional=True,
        accept=_accept,
        requires=Requirements(modules=("onnxruntime", "onnx"), extra="onnx"),
    ))
