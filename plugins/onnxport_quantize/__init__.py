"""Built-in plugin: the `quantize` pass, INT8 with onnxruntime.

onnxruntime's `quant_pre_process` (shape inference, basic graph optimisation), then
either `quantize_dynamic` (weights int8 or uint8, activations quantized at run time) or
`quantize_static` in QDQ format (activations calibrated ahead: on `--calibration-data`,
or with a warning on synthetic inputs). The target's options["quantize"] say how (see
docs/targets.md):

- mode: "off" (the pass does not apply), "on" (INT8 ships; the run fails if it misses
  the target's INT8 budget), "auto" (the INT8 model is an alternative: it competes with
  the fp32 model it came from, and the core ships the faster of those that verify,
  timed side by side at the target's batch sizes; the report says why)
- method ("dynamic" | "static"), weight_type ("QInt8" | "QUInt8"), per_channel,
  reduce_range, op_types (Conv only if listed, for dynamic), pre_process,
  calibrate_method, calibration_samples.

`variants`: with calibration data, or with `--optimize thorough`, static INT8 is a
candidate too; `thorough` also tries the other per-channel setting. A model with
nothing to quantize is never shipped as "INT8": mode "on" is an error naming the op
types looked for, mode "auto" skips the pass with that reason. Importing this module
imports neither onnx nor onnxruntime.
"""

from __future__ import annotations

from onnxport.host import hookimpl
from onnxport.pass_modes import mode_of
from onnxport.records import Pass, Requirements, Target

from .options import QuantizeOptions, parse_options


def mode(target: Target) -> str:
    """The quantization mode a target asks for; "auto" when it lists the pass but sets
    no mode (INT8 only where it pays off)."""
    return mode_of(target, "quantize", QuantizeOptions.mode)


def _run(context):
    from .quantizing import quantize

    return quantize(context)


def variants(target: Target, level: str, calibrated: bool) -> list[dict]:
    """The INT8 candidates to try: the target's settings, then static QDQ INT8 (with
    calibration data, or always when thorough), then the other per-channel setting
    (thorough)."""
    settings = parse_options(target.options.get("quantize", {}), target.name)
    tried: list[dict] = [{}]
    if settings.method == "dynamic" and (calibrated or level == "thorough"):
        tried.append({"method": "static"})
    if level == "thorough":
        tried.append({"per_channel": not settings.per_channel})
    return tried


@hookimpl
def onnxport_register_passes(register):
    register(Pass(
        name="quantize",
        description="INT8 (onnxruntime: dynamic, or static QDQ on calibration data) with "
                    "the target's settings; mode on ships INT8 within its budget, auto "
                    "makes INT8 a candidate that ships where it verifies and is faster",
        run=_run,
        applies=lambda target: mode(target) != "off",
        optional=True,
        alternative=True,
        variants=variants,
        options=QuantizeOptions,
        requires=Requirements(modules=("onnxruntime", "onnx"), extra="onnx"),
    ))
