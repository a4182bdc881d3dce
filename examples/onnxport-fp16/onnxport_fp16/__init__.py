"""onnxport plugin: the `fp16` pass (float32 -> float16 for GPU targets) and the
`cuda-fp16` target.

A pass declares the targets it applies to: `fp16` applies only to a target whose
execution providers include CUDA or TensorRT, because float16 pays off on GPUs (tensor
cores, half the memory traffic) while most CPUs have no float16 kernels and run it
slower. Listed in a CPU target's passes, it is skipped with that reason.

The model keeps float32 inputs and outputs (Casts at the boundary), so callers do not
change; ops that are unsafe or have no float16 form stay float32 with Casts around them
(options.BLOCKED_OPS). Its model is verified against the source like every stage, with
a float16 budget (options.DEFAULT_TOLERANCE) instead of the target's float32 one; if it
misses it, the float32 model ships and the report says why, unless `fp16.required`.

Importing this module imports neither onnx nor onnxruntime.
"""

from __future__ import annotations

from onnxport.host import hookimpl
from onnxport.records import Pass, Requirements, Target

__version__ = "0.1.0"

GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")


def applies(target: Target) -> bool:
    """Only where a GPU provider is asked for."""
    return any(p in GPU_PROVIDERS for p in target.providers)


def _run(context):
    from .running import run

    return run(context)


# A copy of onnxport's built-in `cuda` target with its built-in `float16` pass replaced
# by this plugin's `fp16` (a plugin cannot read another plugin's records while
# registering; the tests compare the two).
CUDA_FP16 = Target(
    name="cuda-fp16",
    description="NVIDIA GPU with the CUDA provider, float16 weights and activations "
                "(float32 inputs and outputs); falls back to CPU (and says so) where "
                "CUDA is unavailable",
    providers=("CUDAExecutionProvider", "CPUExecutionProvider"),
    passes=("simplify", "fp16"),
)


@hookimpl
def onnxport_register_passes(register):
    register(Pass(
        name="fp16",
        description="float32 -> float16 for GPU targets (CUDA, TensorRT): weights, "
                    "constants and activations; inputs and outputs stay float32; "
                    "unsafe ops stay float32 between Casts; verified with a float16 "
                    "budget, the float32 model kept if it misses it",
        run=_run,
        applies=applies,
        optional=True,
        requires=Requirements(modules=("onnx", "numpy"), extra="onnx"),
    ))


@hookimpl
def onnxport_register_targets(register):
    register(CUDA_FP16)
