"""Keras (or SavedModel) to ONNX with tf2onnx's `from_function`.

The model is wrapped in a `tf.function` with an explicit input signature (batch axis
None when the batch is dynamic) that calls it with `training=False` and returns a dict;
`from_keras` is not used because it breaks on Keras 3 models (KeyError 'keras_tensor_N',
missing `output_names`). Recurrent layers are traced with `use_cudnn=False` and GPUs
hidden, so an LSTM becomes an ONNX `LSTM`, never `CudnnRNNV3`. tf2onnx's placeholder
names are then replaced by the user's, the graph is checked for ops tf2onnx left
unconverted (it only logs them), and the model is written as one file.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Iterator

from onnxport.errors import ExportFailed
from onnxport.records import ExportRequest, ExportResult, LoadedModel

from . import DEFAULT_OPSET
from .calling import SAVED_MODEL, call_flat
from .onnxgraph import name_batch_axis, op_histogram, rename_interface, unsupported_ops
from .tfenv import captured_tf2onnx_log, import_tensorflow, import_tf2onnx, numpy2_aliases

PROTOBUF_LIMIT = 2 * 1024**3
SUPPORT_TABLE = "https://github.com/onnx/tensorflow-onnx/blob/main/support_status.md"


def export(loaded: LoadedModel, request: ExportRequest) -> ExportResult:
    tf = import_tensorflow()
    tf2onnx = import_tf2onnx()
    import onnx

    opset = request.opset or DEFAULT_OPSET
    specs = input_signature(loaded, request.dynamic_batch, tf)
    placeholders_out = [f"onnxport_output_{i}" for i in range(len(loaded.output_names))]

    def serve(*tensors):
        outputs = call_flat(loaded, list(tensors))
        return {key: tf.identity(t) for key, t in zip(placeholders_out, outputs)}

    function = tf.function(serve, input_signature=specs, autograph=False)
    with no_cudnn(loaded), captured_tf2onnx_log() as log, numpy2_aliases(), \
            tf.device("/cpu:0"):
        try:
            model_proto, _ = tf2onnx.convert.from_function(function, input_signature=specs,
                                                           opset=opset)
        except ExportFailed:
            raise
        except Exception as exc:
            raise ExportFailed(f"tracing the model or converting it with tf2onnx failed: "
                               f"{type(exc).__name__}: {_first_line(exc)}",
                               "run with --debug for the full error") from exc
    missing = unsupported_ops(model_proto, opset)
    if missing:
        raise _unsupported(missing, opset)
    rename_interface(model_proto,
                     inputs={s.name: n for s, n in zip(specs, loaded.input_names)},
                     outputs=dict(zip(placeholders_out, loaded.output_names)))
    if request.dynamic_batch:
        name_batch_axis(model_proto)
    model_proto.doc_string = f"{loaded.description}, converted by onnxport with tf2onnx"
    model_proto.producer_version = tf2onnx.__version__  # tf2onnx appends its git hash
    path = Path(request.output_path)
    external = request.external_data
    if external is None:
        external = model_proto.ByteSize() > PROTOBUF_LIMIT * 0.9
    onnx.save_model(model_proto, str(path), save_as_external_data=bool(external),
                    all_tensors_to_one_file=True, location=path.name + ".data",
                    size_threshold=1024)
    side_files = sorted(p for p in path.parent.iterdir() if p != path and p.is_file()
                        and p.name.startswith(path.name))
    return ExportResult(
        path=path, exporter="tf2onnx", opset=opset, files=side_files,
        warnings=_warnings(log),
        details={"tf2onnx": tf2onnx.__version__, "tensorflow": tf.__version__,
                 "dynamic_batch": request.dynamic_batch, "external_data": bool(external),
                 "ops": dict(sorted(op_histogram(model_proto).items()))})


def input_signature(loaded: LoadedModel, dynamic_batch: bool, tf) -> list:
    """One TensorSpec per input: the declared shape (None kept where the model leaves an
    axis open), the batch axis None if dynamic, else the example's batch."""
    specs = []
    shapes = loaded.details.get("input_shapes") or []
    for i, name in enumerate(loaded.input_names):
        example = loaded.example_inputs[name]
        declared = shapes[i] if i < len(shapes) and shapes[i] else list(example.shape)
        shape = [*declared]
        if shape:
            shape[0] = None if dynamic_batch else int(example.shape[0])
        specs.append(tf.TensorSpec(shape, tf.as_dtype(example.dtype),
                                   name=f"onnxport_input_{i}"))
    return specs


@contextlib.contextmanager
def no_cudnn(loaded: LoadedModel) -> Iterator[None]:
    """Trace recurrent layers with their generic kernels: on a machine where TensorFlow
    sees a GPU, `use_cudnn="auto"` would put `CudnnRNNV3` in the graph."""
    changed = []
    if loaded.details.get("source_kind") != SAVED_MODEL:
        for layer in _layers(loaded.model):
            if getattr(layer, "use_cudnn", False) in ("auto", True):
                changed.append((layer, layer.use_cudnn))
                layer.use_cudnn = False
    try:
        yield
    finally:
        for layer, value in changed:
            layer.use_cudnn = value


def _layers(model) -> list:
    try:
        return list(model._flatten_layers(include_self=False, recursive=True))
    except (AttributeError, TypeError):
        return list(getattr(model, "layers", []))


def _unsupported(ops, opset: int) -> ExportFailed:
    listed = ", ".join(f"{op} (x{n})" if n > 1 else op for op, n in sorted(ops.items()))
    if any(op.startswith("CudnnRNN") for op in ops):
        return ExportFailed(
            f"the traced graph holds {listed}, a GPU-only recurrent kernel tf2onnx cannot "
            "convert (TensorFlow had initialised a GPU before onnxport could hide it)",
            "convert from the command line, or call tf.config.set_visible_devices([], "
            "'GPU') before TensorFlow first runs")
    return ExportFailed(
        f"tf2onnx has no ONNX conversion at opset {opset} for the TensorFlow op(s) "
        f"{listed}",
        f"replace them in the model with supported ops (see {SUPPORT_TABLE}), or try "
        "another --opset")


def _warnings(records: list[logging.LogRecord]) -> list[str]:
    """tf2onnx's warnings and errors that were not fatal (e.g. dropped attributes)."""
    messages = []
    for record in records:
        if record.levelno >= logging.WARNING:
            text = (record.getMessage().strip().splitlines() or [""])[0]
            if text and text not in messages:
                messages.append(text)
    return messages[:10]


def _first_line(exc: BaseException, limit: int = 200) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    text = lines[0] if lines else ""
    return text if len(text) <= limit else text[:limit - 3] + "..."
