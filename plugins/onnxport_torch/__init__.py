"""Built-in plugin: PyTorch models to ONNX with torch.onnx (dynamo or TorchScript).

Importing this module does not import torch; `load`, `export` and the runner do.
"""

from __future__ import annotations

from onnxport.host import hookimpl
from onnxport.records import Backend, Requirements, Runner

from .detect import can_load

REQUIRES = Requirements(modules=("torch", "onnx", "onnxscript"), extra="torch")
EXPORTERS = ("dynamo", "torchscript")
# What each exporter of torch 2.9+ can write (torch.onnx._constants).
OPSETS = {"dynamo": (18, 23), "torchscript": (7, 20)}


def _load(request):
    from .loading import load

    return load(request)


def export(loaded, request):
    """torch.onnx export of a loaded module (also the transformers backend's)."""
    from .exporting import export

    return export(loaded, request)


def capture(loaded, feeds, onnx_path):
    from .intermediates import capture_intermediates

    return capture_intermediates(loaded, feeds, onnx_path)


def _open(loaded, options):
    from .running import TorchSession

    return TorchSession(loaded, options)


@hookimpl
def onnxport_register_backends(register):
    register(Backend(
        name="torch",
        description="PyTorch models through torch.onnx: the dynamo exporter (default) or "
                    "the TorchScript exporter",
        accepts="an nn.Module or a factory returning one, a .pt2 ExportedProgram, a "
                ".pt/.pth pickled model (with --trust-code)",
        can_load=can_load,
        load=_load,
        export=export,
        runner="torch",
        exporters=EXPORTERS,
        opsets=OPSETS,
        capture_intermediates=capture,
        requires=REQUIRES,
    ))


@hookimpl
def onnxport_register_runners(register):
    register(Runner(
        name="torch",
        description="runs the source nn.Module (eval mode, inference_mode) on the CPU",
        open=_open,
        requires=REQUIRES,
    ))
