"""Built-in plugin: the onnxruntime runner and the default `cpu` target.

Execution-provider selection for other targets builds on this runner.
"""

from __future__ import annotations

from onnxport.host import hookimpl
from onnxport.records import Requirements, Runner, Target


def _open(model_path, options):
    from .session import OrtSession

    return OrtSession(model_path, options)


@hookimpl
def onnxport_register_runners(register):
    register(Runner(
        name="onnxruntime",
        description="runs .onnx files in an onnxruntime InferenceSession with the "
                    "target's execution providers",
        open=_open,
        requires=Requirements(modules=("onnxruntime",), extra="runtime"),
    ))


@hookimpl
def onnxport_register_targets(register):
    register(Target(
        name="cpu",
        description="any x86-64 or ARM64 CPU, ONNX Runtime's CPU provider, fp32 (the "
                    "default target)",
    ))
