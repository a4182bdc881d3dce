"""Built-in plugin: the onnxruntime runner with execution-provider selection, and the
built-in deployment targets (cpu, arm64/rpi4, x86-avx2, x86-avx512-vnni, cuda, tensorrt,
auto).
"""

from __future__ import annotations

from onnxport.host import hookimpl
from onnxport.records import Requirements, Runner

from .targets import ALIASES, BUILTIN_TARGETS, alias


def _open(model_path, options):
    from .session import OrtSession

    return OrtSession(model_path, options)


def _provider_info():
    import onnxruntime

    return onnxruntime.get_available_providers(), onnxruntime.get_all_providers()


@hookimpl
def onnxport_register_runners(register):
    register(Runner(
        name="onnxruntime",
        description="runs .onnx files in an onnxruntime InferenceSession with the "
                    "target's execution providers, and reports the ones really used",
        open=_open,
        provider_info=_provider_info,
        requires=Requirements(modules=("onnxruntime",), extra="runtime"),
    ))


@hookimpl
def onnxport_register_targets(register):
    by_name = {target.name: target for target in BUILTIN_TARGETS}
    for target in BUILTIN_TARGETS:
        register(target)
    for name, of in ALIASES.items():
        register(alias(name, by_name[of]))
