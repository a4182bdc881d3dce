"""An ONNX graph as diagnose needs it: its nodes in topological order, and a copy with
every intermediate tensor made a graph output so that a runner returns them all."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from onnxport.artifact.modelinfo import element_dtype, import_onnx
from onnxport.diagnose.findings import NodeInfo
from onnxport.errors import BadInput
from onnxport.records import RunOptions


class Graph:
    """An ONNX model's top-level nodes and initializers, and a copy with every
    intermediate tensor made a graph output."""

    def __init__(self, path: Path):
        onnx = import_onnx()
        self.path = Path(path)
        try:
            self.model = onnx.load(str(path))
        except Exception as exc:
            raise BadInput(f"{path} is not a readable ONNX model "
                           f"({type(exc).__name__}: {exc})") from exc
        graph = self.model.graph
        self.nodes = list(graph.node)
        self.inputs = [i.name for i in graph.input]
        self.outputs = [o.name for o in graph.output]
        self.initializers = {i.name: (list(i.dims), element_dtype(i.data_type))
                             for i in graph.initializer}
        self.producer = {o: n for n in self.nodes for o in n.output if o}
        self.tensors = [o for n in self.nodes for o in n.output if o]

    def exposed(self, directory: Path) -> tuple[Path, int]:
        """Save a copy whose outputs are every tensor a node produces; return its path
        and how many tensors got their type from shape inference."""
        onnx = import_onnx()
        from onnx import helper

        model = onnx.ModelProto()
        model.CopyFrom(self.model)
        types: dict[str, Any] = {}
        try:
            inferred = onnx.shape_inference.infer_shapes(model)
            types = {v.name: v.type for v in inferred.graph.value_info}
        except Exception:  # a model shape inference cannot read still runs
            pass
        existing = set(self.outputs)
        typed = 0
        for name in self.tensors:
            if name in existing:
                continue
            existing.add(name)
            value = helper.make_empty_tensor_value_info(name)
            known = types.get(name)
            if known is not None and known.HasField("tensor_type") and \
                    known.tensor_type.elem_type:
                # the element type only: symbolic shapes from inference are not needed
                value.type.tensor_type.elem_type = known.tensor_type.elem_type
                typed += 1
            model.graph.output.append(value)
        Path(directory).mkdir(parents=True, exist_ok=True)
        path = Path(directory) / f"exposed-{self.path.stem}.onnx"
        size = sum(i.ByteSize() for i in model.graph.initializer)
        if size > 1_800_000_000:
            onnx.save_model(model, str(path), save_as_external_data=True,
                            all_tensors_to_one_file=True, location=path.name + ".data")
        else:
            onnx.save_model(model, str(path))
        return path, typed

    def node_info(self, node, values: Mapping[str, np.ndarray]) -> NodeInfo:
        return NodeInfo(node.name or f"({node.op_type})", node.op_type,
                        [self._describe(name, values) for name in node.input if name],
                        [o for o in node.output if o])

    def layer_inputs(self, node_names: Sequence[str], values: Mapping[str, np.ndarray]
                     ) -> list[tuple[str, list[int] | None, str]]:
        """What enters a layer made of these nodes: activations first, then its weights
        (scalar constants left out)."""
        names = set(node_names)
        members = [n for n in self.nodes if n.name in names]
        made = {o for n in members for o in n.output}
        entering: list[str] = []
        for node in members:
            for name in node.input:
                if name and name not in made and name not in entering:
                    entering.append(name)
        described = [self._describe(name, values) for name in entering]
        activations = [d for d in described if d[0] not in self.initializers
                       and d[1] != []] or \
            [d for d in described if d[0] not in self.initializers]
        weights = [d for d in described if d[0] in self.initializers and d[1]]
        return activations + weights

    def _describe(self, name: str, values: Mapping[str, np.ndarray]
                  ) -> tuple[str, list[int] | None, str]:
        if name in values:
            array = np.asarray(values[name])
            return name, list(array.shape), str(array.dtype)
        if name in self.initializers:
            dims, dtype = self.initializers[name]
            return name, dims, dtype
        return name, None, "?"


def run_model(path: Path, runner, options: RunOptions, feeds: Mapping[str, np.ndarray]
         ) -> dict[str, np.ndarray]:
    session = runner.open(path, options)
    try:
        return {k: np.asarray(v) for k, v in session.run(feeds).items()}
    finally:
        session.close()


def is_float(array: np.ndarray) -> bool:
    return np.asarray(array).dtype.kind == "f"
