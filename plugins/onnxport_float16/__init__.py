"""Built-in plugin: the `float16` pass, onnxruntime's float16 converter, for GPU targets.

`onnxruntime.transformers.float16.convert_float_to_float16` stores the float32 weights
in float16 and computes in float16, with the graph's inputs and outputs kept float32
(Casts at the edges: callers do not change) and the converter's block list (plus
`float16.block_ops`) kept float32 between Casts. It runs in a child process with a time
limit (child.py says why). It applies only to targets whose providers include CUDA or
TensorRT: float16 pays off on GPUs (tensor cores, half the memory traffic), while most
CPUs have no float16 kernels.

The pass is an `alternative`: its model competes with the float32 model it came from,
verified against the source with a float16 budget (options.DEFAULT_TOLERANCE), and the
core ships the faster of those that verify. The target's options["float16"] say how:

- mode: "off" (the pass does not apply), "on" (float16 ships; the run fails if it
  misses its budget), "auto" (float16 is a candidate; the default)
- block_ops: op types kept float32 besides the converter's default block list
- atol, rtol, min_cosine: the float16 budget; timeout: seconds for the converter.

Without a GPU the target falls back to the CPU provider, which runs a float16 model by
casting around the ops it has no float16 kernel for: the candidate is verified there
but not timed (the CPU's figures say nothing about a GPU), so mode auto ships the more
accurate float32 model (flow/choosing.py, docs/targets.md). The examples/onnxport-fp16 plugin (pass `fp16`) shows how a
third party writes such a pass by hand. Importing this module imports neither onnx nor
onnxruntime.
"""

from __future__ import annotations

from onnxport.host import hookimpl
from onnxport.pass_modes import mode_of
from onnxport.records import Pass, Requirements, Target

from .options import Float16Options

GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")


def mode(target: Target) -> str:
    """The float16 mode a target asks for; "auto" when it lists the pass but sets none."""
    return mode_of(target, "float16", Float16Options.mode)


def applies(target: Target) -> bool:
    """Only where a GPU provider is asked for, and the mode is not off."""
    return any(p in GPU_PROVIDERS for p in target.providers) and mode(target) != "off"


def _run(context):
    from .converting import convert

    return convert(context)


@hookimpl
def onnxport_register_passes(register):
    register(Pass(
        name="float16",
        description="float32 -> float16 for GPU targets (CUDA, TensorRT) with "
                    "onnxruntime's converter: inputs and outputs stay float32, blocked "
                    "ops stay float32 between Casts; verified with a float16 budget; mode "
                    "on ships float16, auto makes it a candidate that ships where it is "
                    "faster",
        run=_run,
        applies=applies,
        optional=True,
        alternative=True,
        options=Float16Options,
        requires=Requirements(modules=("onnxruntime", "onnx"), extra="onnx"),
    ))
