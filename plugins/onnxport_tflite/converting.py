"""Keras (or SavedModel) to .tflite, with the converter in a child process.

The parent writes the model as a SavedModel whose `serving_default` signature calls it
with `training=False` and carries the user's input and output names (through
`keras.export.ExportArchive`; `tf.saved_model.save` on a Keras 3 model silently yields a
.tflite with wrong numbers, see `onnxport probe tflite`). The child (child.py) runs the
converter on that directory. A crash there (a signal, an LLVM abort) or a converter error
becomes one `ExportFailed` line quoting the converter, and this process carries on.
The names, in the model's order, are stored in the .tflite file's metadata, because
TFLite signatures keep their keys sorted.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from onnxport.errors import BadInput, ExportFailed
from onnxport.records import ExportRequest, ExportResult, LoadedModel

from .names import METADATA_KEY, signature_keys

CHILD = Path(__file__).with_name("child.py")
TIMEOUT_VARIABLE = "ONNXPORT_TFLITE_TIMEOUT"
DEFAULT_TIMEOUT = 900.0
MARKER = "onnxport-tflite-error: "
_NOISE = re.compile(r"^(I0000|W0000|WARNING: All log messages|Extension modules:|"
                    r"\s*File \"|Current thread|Thread 0x|\s*$)")
_IMPORTANT = re.compile(r"LLVM ERROR|error:|Error|Fatal|Check failed|Abort|terminate")


def export(loaded: LoadedModel, request: ExportRequest) -> ExportResult:
    from onnxport_keras.tfenv import import_keras, import_tensorflow

    if request.opset is not None:
        raise BadInput("--opset does not apply to the tflite backend (TFLite has no "
                       "opsets)", "drop --opset")
    tf = import_tensorflow("the tflite backend")
    keras = import_keras("the tflite backend")
    output = Path(request.output_path).with_suffix(".tflite")
    saved_model = output.parent / f"{output.stem}.tflite-savedmodel"
    inputs = signature_keys(loaded.input_names, "input")
    outputs = signature_keys(loaded.output_names, "output")
    write_saved_model(loaded, saved_model, inputs, outputs, request.dynamic_batch, tf,
                      keras)
    run_converter(saved_model, output)
    add_names(output, dict(zip(loaded.input_names, inputs)),
              dict(zip(loaded.output_names, outputs)))
    return ExportResult(
        path=output, exporter="tflite", opset=0, format="tflite", runner="tflite",
        details={"tensorflow": tf.__version__,
                 "converter": "TFLiteConverter.from_saved_model (child process)",
                 "dynamic_batch": request.dynamic_batch})


def write_saved_model(loaded: LoadedModel, directory: Path, inputs: list[str],
                      outputs: list[str], dynamic_batch: bool, tf, keras) -> None:
    from onnxport_keras.calling import SAVED_MODEL, call_flat
    from onnxport_keras.exporting import input_signature, no_cudnn

    specs = [tf.TensorSpec(s.shape, s.dtype, name=key)
             for s, key in zip(input_signature(loaded, dynamic_batch, tf), inputs)]

    def serve(*tensors):
        return dict(zip(outputs, call_flat(loaded, list(tensors))))

    try:
        with no_cudnn(loaded):
            if loaded.details.get("source_kind") == SAVED_MODEL:
                function = tf.function(serve, input_signature=specs)
                tf.saved_model.save(loaded.model, str(directory), signatures={
                    "serving_default": function.get_concrete_function()})
            else:
                archive = keras.export.ExportArchive()
                archive.track(loaded.model)
                archive.add_endpoint("serving_default", serve, input_signature=specs)
                archive.write_out(str(directory), verbose=False)
    except Exception as exc:
        raise ExportFailed(f"could not write the SavedModel the TFLite converter reads: "
                           f"{type(exc).__name__}: {_first_line(str(exc))}",
                           "run with --debug for the full error") from exc


def run_converter(saved_model: Path, output: Path) -> None:
    timeout = float(os.environ.get(TIMEOUT_VARIABLE) or DEFAULT_TIMEOUT)
    command = [sys.executable, "-X", "faulthandler", str(CHILD), "convert",
               str(saved_model), str(output)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              env=child_environment())
    except subprocess.TimeoutExpired as exc:
        raise ExportFailed(f"the TFLite converter did not finish in {timeout:.0f} s and "
                           "was stopped",
                           f"set {TIMEOUT_VARIABLE} to allow longer, or convert to ONNX "
                           "(drop --backend tflite)") from exc
    if done.returncode == 0 and output.is_file() and output.stat().st_size > 0:
        return
    raise converter_failure(done.returncode, done.stderr)


def child_environment() -> dict[str, str]:
    return {**os.environ, "CUDA_VISIBLE_DEVICES": "-1",
            "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
            "KERAS_BACKEND": "tensorflow"}


def converter_failure(returncode: int, stderr: str) -> ExportFailed:
    """One line from the converter's exit status and stderr."""
    fallback = "convert to ONNX instead (drop --backend tflite)"
    marked = [line[len(MARKER):] for line in stderr.splitlines() if line.startswith(MARKER)]
    if marked:
        error = json.loads(marked[-1])
        text = error["message"]
        reason = converter_message(text) or f"{error['type']}: {_first_line(text)}"
        if "TensorListReserve" in text or "tensor list" in text.lower():
            return ExportFailed(
                f"the TFLite converter failed: {reason}",
                "a recurrent layer (LSTM, GRU) needs TensorList ops that TFLite's "
                f"builtin ops do not have; {fallback}, where it becomes an ONNX LSTM")
        return ExportFailed(f"the TFLite converter failed: {reason}", fallback)
    tail = stderr_tail(stderr)
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "unknown signal"
        return ExportFailed(
            f"the TFLite converter crashed (signal {-returncode}, {name}) in its child "
            f"process" + (f": {tail}" if tail else ""),
            f"onnxport itself is unaffected; {fallback}, or check `onnxport probe tflite`")
    return ExportFailed(f"the TFLite converter's process exited with status {returncode}"
                        + (f": {tail}" if tail else ""), fallback)


def converter_message(text: str) -> str:
    """The first MLIR diagnostic without its location: "'tf.X' op requires ..."."""
    for line in text.splitlines():
        if "error:" not in line:
            continue
        message = line.split("error:", 1)[1].strip()
        if message.startswith("loc("):
            message = message.rsplit("): ", 1)[-1]
        if message:
            return _first_line(message)
    return ""


def stderr_tail(stderr: str, count: int = 2) -> str:
    lines = [line.strip() for line in stderr.splitlines() if not _NOISE.match(line)]
    important = [line for line in lines if _IMPORTANT.search(line)]
    chosen = list(dict.fromkeys(important or lines))[-count:]
    return " | ".join(_first_line(line, 160) for line in chosen)


def add_names(path: Path, inputs: dict[str, str], outputs: dict[str, str]) -> None:
    """Record {name: signature key} for inputs and outputs, in the model's order."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(path.read_bytes()))
    payload = json.dumps({"signature": "serving_default", "inputs": list(inputs.items()),
                          "outputs": list(outputs.items())}).encode()
    buffer = schema.BufferT()
    buffer.data = list(payload)
    model.buffers.append(buffer)
    metadata = schema.MetadataT()
    metadata.name = METADATA_KEY.encode()
    metadata.buffer = len(model.buffers) - 1
    model.metadata = [*(model.metadata or []), metadata]
    path.write_bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _first_line(text: str, limit: int = 220) -> str:
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    first = lines[0] if lines else ""
    return first if len(first) <= limit else first[:limit - 3] + "..."
