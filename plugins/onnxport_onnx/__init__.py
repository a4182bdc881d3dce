"""Built-in plugin: an ONNX file as the source, and the runner that runs it as the
reference.

A model that is already ONNX still needs what a conversion gives: each target's passes
(simplify, INT8), verification of every stage against the original, a manifest and a
report. The `onnx` backend loads a self-contained .onnx file (checked with
`onnx.checker`, no external data: a path inside an uploaded file must never be
followed), "exports" it unchanged (or converted to the opset asked for), and the
`onnx-source` runner runs the original with onnxruntime, optimisations off, as the
reference every stage is compared with. Nothing in an ONNX file runs Python code.

Importing this module imports neither onnx nor onnxruntime.
"""

from __future__ import annotations

from onnxport.host import hookimpl
from onnxport.records import Backend, Requirements, Runner, Source

REQUIRES = Requirements(modules=("onnx", "onnxruntime"), extra="onnx")


def can_load(source: Source) -> bool:
    return source.kind == "path" and source.path.is_file() and \
        source.path.suffix.lower() == ".onnx"


def _load(request):
    from .loading import load

    return load(request)


def _export(loaded, request):
    from .loading import export

    return export(loaded, request)


def _open(loaded, options):
    from .loading import SourceSession

    return SourceSession(loaded, options)


@hookimpl
def onnxport_register_backends(register):
    register(Backend(
        name="onnx",
        description="an existing ONNX file: checked, post-processed per target and "
                    "verified against itself run by onnxruntime",
        accepts=".onnx (self-contained)",
        can_load=can_load,
        load=_load,
        export=_export,
        runner="onnx-source",
        requires=REQUIRES,
    ))


@hookimpl
def onnxport_register_runners(register):
    register(Runner(
        name="onnx-source",
        description="runs a source .onnx file with onnxruntime on the CPU, graph "
                    "optimisations off: the reference for an ONNX source",
        open=_open,
        requires=Requirements(modules=("onnxruntime",), extra="runtime"),
    ))
