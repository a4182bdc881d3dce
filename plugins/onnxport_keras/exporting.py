"""Keras (or SavedModel) to ONNX with tf2onnx, the way its `from_function` does it.

The model is wrapped in a `tf.function` with an explicit input signature (batch axis
None when the batch is dynamic) that calls it with `training=False` and returns a dict;
`from_keras` is not used because it breaks on Keras 3 models (KeyError 'keras_tensor_N',
missing `output_names`). Recurrent layers are traced with `use_cudnn=False` and GPUs
hidden, so an LSTM becomes an ONNX `LSTM`, never `CudnnRNNV3`. tf2onnx's placeholder
names are then replaced by the user's, the graph is checked for ops tf2onnx left
unconverted (it only logs them), and the model is written as one file.

`tf2onnx.convert.from_function` itself is not called: it makes every non-resource input
of the traced function a graph input, including the constants the function captures
(keras.applications EfficientNet's `Normalization` mean and variance became ONNX inputs
`.../normalization_1/Sub/y:0`). `convert_function` does its steps with the signature's
inputs only (the filter `from_keras` applies), and between freezing and conversion it
lets TensorFlow inline the nested XLA functions Keras 3 compiles grouped convolutions
into, which tf2onnx would leave as `StatefulPartitionedCall`. `Erfc` (exact GELU) is
converted as 1 - Erf.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Iterator

import numpy as np

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
    axes = _dynamic_axes_of(loaded, request)
    specs = input_signature(loaded, request.dynamic_batch, tf, axes)
    placeholders_out = [f"onnxport_output_{i}" for i in range(len(loaded.output_names))]

    def serve(*tensors):
        outputs = call_flat(loaded, list(tensors))
        return {key: tf.identity(t) for key, t in zip(placeholders_out, outputs)}

    function = tf.function(serve, input_signature=specs, autograph=False)
    with no_cudnn(loaded), captured_tf2onnx_log() as log, numpy2_aliases(), \
            tf.device("/cpu:0"):
        try:
            model_proto = convert_function(function, specs, opset)
        except ExportFailed:
            raise
        except Exception as exc:
            raise ExportFailed(f"tracing the model or converting it with tf2onnx failed: "
                               f"{type(exc).__name__}: {_first_line(exc)}",
                               "run with --debug for the full error") from exc
    missing = unsupported_ops(model_proto, opset)
    if missing:
        raise _unsupported(missing, opset, model_proto, loaded)
    rename_interface(model_proto,
                     inputs={s.name: n for s, n in zip(specs, loaded.input_names)},
                     outputs=dict(zip(placeholders_out, loaded.output_names)))
    if request.dynamic_batch:
        name_batch_axis(model_proto)
    _name_dynamic_axes(model_proto, axes)
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
                 **({"dynamic_axes": {n: {str(a): label for a, label in p.items()}
                                      for n, p in axes.items()}} if axes else {}),
                 "ops": dict(sorted(op_histogram(model_proto).items()))})


def convert_function(function, specs: list, opset: int):
    """tf2onnx's `from_function(function, input_signature=specs, opset=opset)`, with three
    differences: only the signature's inputs become graph inputs (not the constants the
    function captures), nested XLA-compiled function calls are inlined before conversion,
    and TensorFlow ops tf2onnx has no handler for but onnxport has (`CUSTOM_OPS`) are
    converted. Returns the ONNX ModelProto."""
    tf = import_tensorflow()
    tf2onnx = import_tf2onnx()
    from tf2onnx import tf_loader

    concrete = function.get_concrete_function(*specs)
    captured = {t.name for t in concrete.graph.internal_captures}
    input_names = [t.name for t in concrete.inputs
                   if t.dtype != tf.dtypes.resource and t.name not in captured]
    if len(input_names) != len(specs):  # the signature's own placeholders come first
        input_names = [t.name for t in concrete.inputs[:len(specs)]]
    output_names = [t.name for t in concrete.outputs if t.dtype != tf.dtypes.resource]
    renames = tf2onnx.convert.tensor_names_from_structed(concrete, input_names,
                                                         output_names)
    frozen = tf_loader.from_function(concrete, input_names, output_names)
    allow_inlining(frozen)
    # from_graph_def runs TensorFlow's graph optimizer (grappler) again, which inlines
    # the calls allow_inlining unmarked, then converts like from_function
    model_proto, _ = tf2onnx.convert.from_graph_def(
        frozen, name=concrete.name, input_names=input_names, output_names=output_names,
        opset=opset, custom_op_handlers=custom_op_handlers(), tensors_to_rename=renames)
    return model_proto


_CALL_OPS = ("StatefulPartitionedCall", "PartitionedCall")
_NO_INLINE = ("_XlaMustCompile", "_noinline")


def allow_inlining(graph_def) -> int:
    """Unmark the function calls TensorFlow's optimizer refuses to inline: Keras 3 runs a
    grouped convolution (Conv2D with groups > 1, e.g. ConvNeXt's depthwise 7x7) and a 3D
    channels-first convolution as `tf.function(jit_compile=True)` on the CPU, whose call
    carries `_XlaMustCompile` and whose function `_noinline`. Inlined, the call becomes
    the plain op inside it (Conv2D, whose `group` tf2onnx derives from the shapes).
    Returns how many call nodes were unmarked."""
    count = 0
    nodes = [*graph_def.node, *(n for f in graph_def.library.function for n in f.node_def)]
    for node in nodes:
        if node.op in _CALL_OPS and any(node.attr[a].b for a in _NO_INLINE
                                        if a in node.attr):
            for attr in _NO_INLINE:
                if attr in node.attr:
                    node.attr[attr].b = False
            count += 1
    for function in graph_def.library.function:
        for attr in _NO_INLINE:
            if attr in function.attr:
                function.attr[attr].b = False
    return count


def custom_op_handlers() -> dict:
    """TensorFlow ops tf2onnx 1.17 cannot convert at any opset, as ONNX ops (tf2onnx's
    per-conversion `custom_op_handlers`, so nothing is registered globally)."""
    return {op: (handler, []) for op, (handler, _) in CUSTOM_OPS.items()}


def _erfc(ctx, node, name, args):
    """erfc(x) = 1 - erf(x). TensorFlow's exact GELU (`tf.nn.gelu(approximate=False)`,
    Keras 3's `gelu` default) is 0.5 * x * erfc(-x / sqrt(2)) in TensorFlow 2.21 (older
    versions used erf); ONNX has Erf but no Erfc (and Gelu only from opset 20). The
    absolute error is at most float32's spacing below 1 (6e-8); erfc(x) < 3e-8 (x ≳ 4)
    becomes 0."""
    from tf2onnx import utils

    source = node.input[0]
    dtype = ctx.get_dtype(source)
    erf = ctx.make_node("Erf", [source], op_name_scope=node.name,
                        shapes=[ctx.get_shape(source)], dtypes=[dtype])
    one = ctx.make_const(utils.make_name(f"{node.name}_one"),
                         np.array(1, dtype=utils.map_onnx_to_numpy_type(dtype)))
    node.type = "Sub"
    ctx.replace_inputs(node, [one.output[0], erf.output[0]])


# op -> (handler, what the docs say it becomes); docs/keras.md has the same table
CUSTOM_OPS = {
    "Erfc": (_erfc, "Sub(1, Erf(x))"),
}


def input_signature(loaded: LoadedModel, dynamic_batch: bool, tf,
                    dynamic_axes: dict[str, dict[int, str]] | None = None) -> list:
    """One TensorSpec per input: the declared shape (None kept where the model leaves an
    axis open), the batch axis None if dynamic, else the example's batch, and None on
    every dynamic axis."""
    specs = []
    shapes = loaded.details.get("input_shapes") or []
    for i, name in enumerate(loaded.input_names):
        example = loaded.example_inputs[name]
        declared = shapes[i] if i < len(shapes) and shapes[i] else list(example.shape)
        shape = [*declared]
        if shape:
            shape[0] = None if dynamic_batch else int(example.shape[0])
        for axis in (dynamic_axes or {}).get(name, {}):
            if axis < len(shape):
                shape[axis] = None
        specs.append(tf.TensorSpec(shape, tf.as_dtype(example.dtype),
                                   name=f"onnxport_input_{i}"))
    return specs


def _dynamic_axes_of(loaded: LoadedModel, request: ExportRequest
                     ) -> dict[str, dict[int, str]]:
    """The loaded model's dynamic axes and any the export request declares, checked."""
    from onnxport.flow.inputs import checked_dynamic_axes, normalized_dynamic_axes

    merged = {name: dict(p) for name, p in (loaded.dynamic_axes or {}).items()}
    for name, per_input in normalized_dynamic_axes(request.dynamic_axes).items():
        merged.setdefault(name, {}).update(per_input)
    if not merged:
        return {}
    shapes = {n: tuple(np.shape(loaded.example_inputs[n])) for n in loaded.input_names}
    return checked_dynamic_axes(merged, shapes, request.dynamic_batch)


def _name_dynamic_axes(model, axes: dict[str, dict[int, str]]) -> None:
    """tf2onnx calls an unknown axis unk__N: give each dynamic axis its declared name."""
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        for axis, label in axes.get(value.name, {}).items():
            if axis < len(dims) and not dims[axis].HasField("dim_value"):
                dims[axis].dim_param = label


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


def _unsupported(ops, opset: int, model_proto=None, loaded=None) -> ExportFailed:
    listed = ", ".join(f"{op} (x{n})" if n > 1 else op for op, n in sorted(ops.items()))
    calls = [op for op in ops if op in _CALL_OPS]
    if calls and model_proto is not None:
        layers = _layers_calling(model_proto, loaded)
        where = (f" in {', '.join(layers[:4])}" + (f" (+{len(layers) - 4} more)"
                                                    if len(layers) > 4 else "")
                 if layers else "")
        return ExportFailed(
            f"the traced graph still holds {listed}{where}: nested tf.function calls "
            "TensorFlow would not inline (Keras 3 runs grouped and 3D channels-first "
            "convolutions as XLA-compiled functions, jit_compile=True), and tf2onnx has "
            "no conversion for a function call",
            "report it with the layer types above; as a workaround, build the layer "
            "without that path (e.g. DepthwiseConv2D instead of Conv2D with groups equal "
            "to the channels)")
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


def _layers_calling(model_proto, loaded) -> list[str]:
    """`name (Class)` of the Keras layers whose scope holds an unconverted function
    call, from the node names tf2onnx keeps (`model_1/layer_1/StatefulPartitionedCall`)."""
    scopes = []
    for node in model_proto.graph.node:
        if node.op_type in _CALL_OPS:
            scopes.extend(part.rsplit("_", 1)[0] if part.rsplit("_", 1)[-1].isdigit()
                          else part for part in node.name.split("/")[:-1])
    by_name = {layer.name: layer for layer in _layers(loaded.model)} if loaded else {}
    found = []
    for scope in dict.fromkeys(scopes):
        layer = by_name.get(scope)
        if layer is None:
            continue
        groups = getattr(layer, "groups", 1)
        extra = f", groups={groups}" if groups and groups != 1 else ""
        found.append(f"{scope} ({type(layer).__name__}{extra})")
    return found


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
