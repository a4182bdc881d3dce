"""Built-in plugin: Keras models to .tflite, registered but off by default, with why.

The backend and its runner are both named `tflite`, so `--enable tflite` (or
ONNXPORT_ENABLE=tflite) turns both on. The TFLite converter runs in a child process,
because it can abort the whole process from C++; `onnxport probe tflite` reports whether
the known failures still happen in this environment. Importing this module does not
import TensorFlow.
"""

from __future__ import annotations

from onnxport.host import hookimpl
from onnxport.records import Backend, Command, Requirements, Runner

from onnxport_keras.detect import ACCEPTS, can_load

REQUIRES = Requirements(modules=("tensorflow", "keras"), extra="keras")
DISABLED_REASON = (
    "off by default: the TFLite converter has aborted on Keras 3 models "
    "(keras-team/keras#19108), LSTM models fail on TensorListReserve, and tf.lite is "
    "deprecated in favour of LiteRT; `onnxport probe tflite` checks this environment; "
    "enable with --enable tflite or ONNXPORT_ENABLE=tflite")


def _load(request):
    from onnxport_keras.loading import load

    return load(request, backend="tflite")


def _export(loaded, request):
    from .converting import export

    return export(loaded, request)


def _open(path, options):
    from .running import TFLiteSession

    return TFLiteSession(path, options)


def _configure_probe(parser):
    from .probe import configure

    configure(parser)


def _run_probe(args):
    from .probe import run

    return run(args)


@hookimpl(trylast=True)  # after the keras backend, which is the default for these sources
def onnxport_register_backends(register):
    register(Backend(
        name="tflite",
        description="Keras 3 models to .tflite with the TFLite converter, run in a child "
                    "process; verified with the TFLite interpreter",
        accepts=ACCEPTS,
        can_load=can_load,
        load=_load,
        export=_export,
        runner="keras",
        exporters=("tflite",),
        requires=REQUIRES,
        enabled=False,
        disabled_reason=DISABLED_REASON,
    ))


@hookimpl
def onnxport_register_runners(register):
    register(Runner(
        name="tflite",
        description="runs .tflite files with the LiteRT interpreter (ai_edge_litert) if "
                    "installed, else tf.lite.Interpreter",
        open=_open,
        requires=REQUIRES,
        enabled=False,
        disabled_reason=DISABLED_REASON,
    ))


@hookimpl
def onnxport_register_commands(cli):
    cli.add(Command(
        name="probe",
        help="check whether known converter failures still happen here (probe tflite)",
        configure=_configure_probe,
        run=_run_probe,
    ))
