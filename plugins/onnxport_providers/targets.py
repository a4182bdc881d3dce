"""The built-in deployment targets, with the reasons for their settings.

Quantization settings follow onnxruntime's guidance for dynamic INT8: ARM64 and
AVX512-VNNI run U8S8 (uint8 activations, int8 weights) natively; AVX2 without VNNI can
saturate with U8S8, so its weights are quantized with reduce_range (7-bit), and so are
the generic `cpu` target's, which may land on such a CPU. Conv is never
quantized by default: it becomes ConvInteger, which has no kernel for signed weights on
most builds. GPU targets never quantize: dynamic INT8 (MatMulInteger) has no CUDA kernel.
They run the `float16` pass in mode auto instead: a float16 candidate competes with the
fp32 model and the faster of those that verify ships (where the GPU provider is missing
nothing is timed, and fp32, the more accurate, ships).
"""

from __future__ import annotations

from onnxport.records import Target

from .cpu_features import pick_target

DEFAULT_OPS = ("MatMul", "Gemm", "LSTM", "Attention", "Gather")


def _quantize(mode: str, weight_type: str = "QInt8", *, reduce_range: bool,
              per_channel: bool = False) -> dict:
    return {"mode": mode, "weight_type": weight_type, "reduce_range": reduce_range,
            "per_channel": per_channel, "op_types": list(DEFAULT_OPS)}


# simplify always (it replaces the model when it verifies); fuse and quantize make
# alternatives (a fused transformer, an INT8 model) that compete with the model they
# came from: the fastest that verifies ships, timed at the target's batch sizes. fuse
# comes first: onnxsim's constant folding rewrites the attention subgraph into a shape
# onnxruntime's optimizer no longer matches (a tiny BERT: 2 Attention fused from the
# export, none after onnxsim).
CPU_PASSES = ("fuse", "simplify", "quantize")
SERVER_BATCHES = (1, 8)  # an inference service batches requests
# GPU targets: float16 is an alternative too (simplify first, so that the float16
# candidate is made from the simplified model it competes with).
GPU_PASSES = ("simplify", "float16")

BUILTIN_TARGETS = [
    Target(
        name="cpu",
        description="any x86-64 or ARM64 CPU, ONNX Runtime's CPU provider, fp32 (the "
                    "default target); INT8 on request, with 7-bit weights that are "
                    "accurate on every CPU",
        passes=CPU_PASSES,
        options={"quantize": _quantize("off", reduce_range=True)},
    ),
    Target(
        name="arm64",
        description="ARM64 with NEON (Raspberry Pi 4/5 class): XNNPACK when this "
                    "onnxruntime has it, else CPU; INT8 U8S8 kept only if faster",
        providers=("XnnpackExecutionProvider", "CPUExecutionProvider"),
        passes=CPU_PASSES,
        machine="aarch64",
        options={"quantize": _quantize("auto", "QInt8", reduce_range=False)},
    ),
    Target(
        name="x86-avx2",
        description="x86-64 with AVX2, no VNNI: INT8 with 7-bit weights (reduce_range) "
                    "against saturation, kept only if faster at batch 1 and 8",
        passes=CPU_PASSES,
        latency_batches=SERVER_BATCHES,
        machine="x86_64",
        cpu_flags=("avx2",),
        options={"quantize": _quantize("auto", "QInt8", reduce_range=True)},
    ),
    Target(
        name="x86-avx512-vnni",
        description="x86-64 with AVX512-VNNI: INT8 U8S8 per channel, kept only if faster "
                    "at batch 1 and 8",
        passes=CPU_PASSES,
        latency_batches=SERVER_BATCHES,
        machine="x86_64",
        cpu_flags=("avx512_vnni",),
        options={"quantize": _quantize("auto", "QInt8", reduce_range=False,
                                       per_channel=True)},
    ),
    Target(
        name="cuda",
        description="NVIDIA GPU with the CUDA provider, fp32 or float16, whichever "
                    "verifies and is faster; falls back to CPU (and says so) where CUDA "
                    "is unavailable",
        providers=("CUDAExecutionProvider", "CPUExecutionProvider"),
        passes=GPU_PASSES,
        options={"float16": {"mode": "auto"}},
    ),
    Target(
        name="tensorrt",
        description="NVIDIA GPU with TensorRT, then CUDA, then CPU, fp32 or float16, "
                    "whichever verifies and is faster; falls back and says so",
        providers=("TensorrtExecutionProvider", "CUDAExecutionProvider",
                   "CPUExecutionProvider"),
        provider_options={"TensorrtExecutionProvider": {"trt_engine_cache_enable": True}},
        passes=GPU_PASSES,
        options={"float16": {"mode": "auto"}},
    ),
    Target(
        name="auto",
        description="this machine: picks arm64, x86-avx512-vnni, x86-avx2 or cpu from the "
                    "CPU's features",
        resolve=pick_target,
    ),
]

ALIASES = {"rpi4": "arm64"}


def alias(name: str, of: Target) -> Target:
    from dataclasses import replace

    return replace(of, name=name, description=f"same as {of.name}: {of.description}")
