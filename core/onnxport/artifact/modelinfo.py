"""Facts about an ONNX file: what `onnxport inspect` prints and the manifest records."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from onnxport.errors import BadInput, MissingDependency

PROTOBUF_LIMIT = 2**31  # bytes: one protobuf message cannot be larger

@dataclass
class TensorInfo:
    name: str
    shape: list[int | str | None]  # str: a symbolic dimension such as "batch"
    dtype: str

    def describe(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name}: {self.dtype}[{dims}]"


@dataclass
class ModelInfo:
    path: str
    size_bytes: int  # the .onnx file plus its external data files
    ir_version: int
    opsets: dict[str, int]  # domain ("" is ai.onnx) -> version
    producer: str
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    node_count: int
    op_histogram: dict[str, int]
    parameter_count: int
    external_data: list[str] = field(default_factory=list)

    @property
    def opset(self) -> int:
        return self.opsets.get("", self.opsets.get("ai.onnx", 0))

    def to_dict(self) -> dict:
        data = asdict(self)
        data["opset"] = self.opset
        return data


def describe_model(path: Path) -> ModelInfo:
    """ONNX files are read in full; other formats (.tflite) are described by size."""
    path = Path(path)
    if path.suffix == ".onnx":
        return read_model_info(path)
    return ModelInfo(path=str(path), size_bytes=path.stat().st_size, ir_version=0,
                     opsets={}, producer=path.suffix.lstrip("."), inputs=[], outputs=[],
                     node_count=0, op_histogram={}, parameter_count=0)


def import_onnx():
    try:
        import onnx
    except ImportError as exc:
        raise MissingDependency("onnx", "onnx", "reading ONNX files") from exc
    return onnx


def load_onnx(path: Path, load_external_data: bool = False):
    """onnx.load that turns a missing or corrupt file into BadInput: passes and commands
    get a file from the user or a previous stage, and a protobuf DecodeError says
    nothing about what to do."""
    onnx = import_onnx()
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{path} does not exist or is not a file")
    if path.stat().st_size >= PROTOBUF_LIMIT:
        raise BadInput(f"{path} is {path.stat().st_size / 1e9:.1f} GB, past protobuf's "
                       "2 GB limit for one message, so no ONNX reader can parse it",
                       "keep the weights as external data beside it (onnxport convert "
                       "--external-data does)")
    try:
        return onnx.load(str(path), load_external_data=load_external_data)
    except Exception as exc:
        raise BadInput(f"{path} is not a readable ONNX model ({type(exc).__name__})",
                       "check that the file is complete and really is .onnx") from exc


def read_model_info(path: Path) -> ModelInfo:
    """Read the graph's interface and statistics without loading external weights."""
    path = Path(path)
    model = load_onnx(path)
    graph = model.graph
    initializer_names = {init.name for init in graph.initializer}
    external = sorted({
        entry.value for init in graph.initializer for entry in init.external_data
        if entry.key == "location"
    })
    size = path.stat().st_size + sum(
        (path.parent / name).stat().st_size for name in external
        if (path.parent / name).is_file()
    )
    ops = Counter(node.op_type if node.domain in ("", "ai.onnx") else
                  f"{node.domain}.{node.op_type}" for node in graph.node)
    params = 0
    for init in graph.initializer:
        count = 1
        for dim in init.dims:
            count *= dim
        params += count
    return ModelInfo(
        path=str(path),
        size_bytes=size,
        ir_version=model.ir_version,
        opsets={op.domain: op.version for op in model.opset_import},
        producer=f"{model.producer_name} {model.producer_version}".strip(),
        inputs=[_tensor_info(v) for v in graph.input if v.name not in initializer_names],
        outputs=[_tensor_info(v) for v in graph.output],
        node_count=len(graph.node),
        op_histogram=dict(ops.most_common()),
        parameter_count=params,
        external_data=external,
    )


def _tensor_info(value) -> TensorInfo:
    tensor_type = value.type.tensor_type
    shape: list[int | str | None] = []
    for dim in tensor_type.shape.dim:
        if dim.HasField("dim_value"):
            shape.append(dim.dim_value)
        elif dim.HasField("dim_param"):
            shape.append(dim.dim_param)
        else:
            shape.append(None)
    return TensorInfo(name=value.name, shape=shape,
                      dtype=element_dtype(tensor_type.elem_type))


def element_dtype(code: int) -> str:
    """The numpy dtype name of an onnx.TensorProto element type (onnx's own mapping)."""
    from onnx import helper

    try:
        dtype = helper.tensor_dtype_to_np_dtype(code)
    except (KeyError, ValueError, TypeError):
        return f"type{code}"
    return "string" if dtype.kind == "O" else dtype.name
