"""Built-in plugin: the `simplify` pass, onnxsim run in a child process.

onnxsim folds constants, removes no-op nodes and fuses patterns (BatchNorm into Conv,
MatMul + Add into Gemm). It runs in a separate Python process with a time limit, so a
native crash or a hang of the simplifier becomes the reason the pass was skipped, never
a dead `onnxport`. Its result is kept only when every input and output keeps its
name and its dynamic (symbolic) dimensions; the core then verifies it against the source
framework like any other stage. The child is started when a conversion starts loading
its model, so that it imports onnx and onnxsim (about a second) while torch or
TensorFlow loads and exports. Importing this module imports neither onnx nor onnxsim.
"""

from __future__ import annotations

import importlib.util

from onnxport.host import hookimpl
from onnxport.records import Pass, Requirements

from .options import SimplifyOptions


def _run(context):
    from .simplifying import simplify

    return simplify(context)


@hookimpl
def onnxport_register_passes(register):
    register(Pass(
        options=SimplifyOptions,
        name="simplify",
        description="onnxsim: constant folding, no-op removal and fusions, in a child "
                    "process with a time limit; dynamic axes stay dynamic; skipped with "
                    "the reason if onnxsim fails, crashes or cannot check its result",
        run=_run,
        optional=True,
        requires=Requirements(modules=("onnxsim", "onnx"), extra="simplify"),
    ))


@hookimpl
def onnxport_stage_started(event):
    """A conversion is starting: start the simplifier's child ahead (see child_tool)."""
    if event.stage == "load" and importlib.util.find_spec("onnxsim") is not None:
        from onnxport.child_tool import prestart

        prestart("onnxport_onnxsim.child")
