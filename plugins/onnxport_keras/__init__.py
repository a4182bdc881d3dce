"""Built-in plugin: Keras 3 models to ONNX through tf2onnx, and the keras runner.

Importing this module does not import TensorFlow, Keras or tf2onnx; `load`, `export`
and the runner do, the first time a Keras source is actually converted.
"""

from __future__ import annotations

from onnxport.host import hookimpl
from onnxport.records import Backend, Requirements, Runner

from .detect import ACCEPTS, can_load

REQUIRES = Requirements(modules=("tensorflow", "keras", "tf2onnx", "onnx"), extra="keras")
EXPORTERS = ("tf2onnx",)
DEFAULT_OPSET = 17
# tf2onnx 1.17 is tested on opsets 14 to 18 and cannot write a later one.
OPSETS = {"tf2onnx": (14, 18)}


def _load(request):
    from .loading import load

    return load(request)


def _export(loaded, request):
    from .exporting import export

    return export(loaded, request)


def _open(loaded, options):
    from .running import KerasSession

    return KerasSession(loaded, options)


@hookimpl
def onnxport_register_backends(register):
    register(Backend(
        name="keras",
        description="Keras 3 models through tf2onnx (a tf.function calling the model "
                    "with training=False, GPUs hidden, LSTMs as ONNX LSTM)",
        accepts=ACCEPTS,
        can_load=can_load,
        load=_load,
        export=_export,
        runner="keras",
        exporters=EXPORTERS,
        opsets=OPSETS,
        requires=REQUIRES,
    ))


@hookimpl
def onnxport_register_runners(register):
    register(Runner(
        name="keras",
        description="runs the source Keras model (training=False) or SavedModel "
                    "signature on the CPU",
        open=_open,
        requires=Requirements(modules=("tensorflow", "keras"), extra="keras"),
    ))
