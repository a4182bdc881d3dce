"""Loading an ONNX source, "exporting" it, and running it as the reference."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from onnxport.errors import BadInput, ExportFailed
from onnxport.records import ExportRequest, ExportResult, LoadedModel, LoadRequest, \
    RunOptions

# onnx TensorProto element types -> numpy dtypes (the ones a model input can have)
_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32",
           7: "int64", 9: "bool", 10: "float16", 11: "float64", 12: "uint32",
           13: "uint64"}


def read_model(path: Path):
    """The ONNX model at `path`, checked, refused if it names external data."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # a damaged or foreign file: protobuf's DecodeError & co
        raise BadInput(f"{path.name} is not a readable ONNX model ({type(exc).__name__}: "
                       f"{str(exc)[:200]})", "send the .onnx file onnx.save wrote") from exc
    tensors = list(model.graph.initializer)
    for node in model.graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                tensors.append(attribute.t)
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in tensors):
        raise BadInput(f"{path.name} keeps its weights in external data files",
                       "an ONNX source must be one self-contained file: save it with "
                       "onnx.save(model, path, save_as_external_data=False)")
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        raise BadInput(f"{path.name} fails onnx.checker: {str(exc).strip()[:300]}",
                       "fix the model, or export it again") from exc
    return model


def load(request: LoadRequest) -> LoadedModel:
    import onnx

    path = Path(request.source.value)
    model = read_model(path)
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    outputs = [o.name for o in graph.output]
    given = {spec.name: spec for spec in request.inputs}
    for wanted, have, what in ((request.input_names, [i.name for i in inputs], "input"),
                               (request.output_names, outputs, "output")):
        if wanted is not None and list(wanted) != have:
            raise BadInput(f"an ONNX source keeps its own {what} names ({have}); it "
                           f"cannot be renamed to {list(wanted)}",
                           f"leave out the {what} names")
    examples: dict[str, Any] = {}
    for value in inputs:
        tensor = value.type.tensor_type
        dtype = _DTYPES.get(tensor.elem_type)
        if dtype is None:
            raise BadInput(f"input {value.name!r} of {path.name} has element type "
                           f"{tensor.elem_type}, which onnxport cannot feed")
        dims = list(tensor.shape.dim)
        if value.name in given:
            shape = list(given[value.name].shape)
            dtype = given[value.name].dtype or dtype
        else:
            shape = []
            for axis, dim in enumerate(dims):
                if dim.HasField("dim_value") and dim.dim_value > 0:
                    shape.append(dim.dim_value)
                elif axis == 0:
                    shape.append(request.example_batch)
                else:
                    raise BadInput(f"input {value.name!r} of {path.name} has a free "
                                   f"dimension at axis {axis}",
                                   f"give its shape: --input {value.name}:SHAPE")
        if request.dynamic_batch and dims and dims[0].HasField("dim_value"):
            raise BadInput(f"input {value.name!r} of {path.name} has a fixed batch "
                           f"dimension ({dims[0].dim_value}), and a dynamic batch was "
                           "asked for", "convert with dynamic_batch off "
                           "(--static-batch), or export the model with a symbolic "
                           "batch axis")
        examples[value.name] = np.zeros(shape, dtype=dtype)
    opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    return LoadedModel(
        backend="onnx", framework="onnx", framework_version=onnx.__version__,
        model=path, input_names=list(examples), output_names=outputs,
        example_inputs=examples,
        description=f"ONNX model ({len(graph.node)} nodes, opset "
                    f"{opsets.get('ai.onnx', '?')}, producer "
                    f"{model.producer_name or 'unknown'})",
        details={"opset": opsets.get("ai.onnx"), "ir_version": model.ir_version,
                 "producer": model.producer_name})


def export(loaded: LoadedModel, request: ExportRequest) -> ExportResult:
    """The source unchanged, or converted to the opset asked for."""
    import onnx

    output = Path(request.output_path)
    output.parent.mkdir(parents=True, exist_ok=True)
    current = loaded.details.get("opset") or 0
    if request.opset is None or request.opset == current:
        shutil.copyfile(loaded.model, output)
        return ExportResult(path=output, exporter="copy", opset=current)
    from onnx import version_converter

    try:
        converted = version_converter.convert_version(read_model(Path(loaded.model)),
                                                      request.opset)
        onnx.checker.check_model(converted)
    except Exception as exc:
        raise ExportFailed(f"onnx could not convert the model from opset {current} to "
                           f"{request.opset}: {str(exc).strip()[:300]}",
                           f"convert at opset {current} (leave out the opset)") from exc
    onnx.save(converted, str(output))
    return ExportResult(path=output, exporter="version_converter", opset=request.opset)


class SourceSession:
    """The source .onnx file in onnxruntime on the CPU, optimisations off."""

    def __init__(self, loaded: LoadedModel, options: RunOptions):
        import onnxruntime as ort

        session_options = ort.SessionOptions()
        session_options.log_severity_level = 3
        session_options.graph_optimization_level = \
            ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        if options.threads:
            session_options.intra_op_num_threads = options.threads
        self.session = ort.InferenceSession(str(loaded.model), session_options,
                                            providers=["CPUExecutionProvider"])
        self.providers = list(self.session.get_providers())
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        outputs = self.session.run(None, {n: feeds[n] for n in self.input_names})
        return dict(zip(self.output_names, outputs))

    def close(self) -> None:
        self.session = None
