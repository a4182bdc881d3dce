"""Shaping skl2onnx's graph into the interface onnxport promised: the outputs the
loader planned (shapes as scikit-learn returns them, under the final names), a symbolic
`batch` axis, and no nodes left that only fed a dropped output."""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import onnx
from onnx import helper, numpy_helper

from onnxport.errors import BadInput, ExportFailed


def finish_graph(model: onnx.ModelProto, *, input_name: str, output_names: list[str],
                 output_shapes: list[list[int]], batch: int | None,
                 metadata: dict[str, str]) -> onnx.ModelProto:
    """`batch` None: dynamic (a `batch` dim_param); else that fixed size."""
    graph = model.graph
    produced = list(graph.output)
    if len(produced) < len(output_names):
        raise ExportFailed(
            f"skl2onnx produced {len(produced)} output(s) "
            f"({', '.join(o.name for o in produced)}) where {len(output_names)} were "
            f"expected ({', '.join(output_names)})",
            "please report it with the estimator and skl2onnx versions")
    kept = produced[:len(output_names)]
    for value, shape in zip(kept, output_shapes):
        _reshape(graph, value, shape)
    _rename(graph, {value.name: name for value, name in zip(kept, output_names)})
    batch_dim: Any = "batch" if batch is None else batch
    new_outputs = [
        helper.make_tensor_value_info(name, value.type.tensor_type.elem_type,
                                      [batch_dim, *shape])
        for name, value, shape in zip(output_names, kept, output_shapes)]
    del graph.output[:]
    graph.output.extend(new_outputs)
    for value in graph.input:
        if value.name == input_name and value.type.tensor_type.shape.dim:
            first = value.type.tensor_type.shape.dim[0]
            if batch is None:
                first.dim_param = "batch"
            else:
                first.dim_value = batch
    _prune(graph)
    for key, text in metadata.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=text))
    return model


def _reshape(graph: onnx.GraphProto, value: onnx.ValueInfoProto, shape: list[int]) -> None:
    """Give the output `value` rank 1 + len(shape), keeping its name: skl2onnx gives
    some outputs a trailing axis of 1 that scikit-learn's method does not return
    (regressors, outlier scores, mixture labels)."""
    dims = value.type.tensor_type.shape.dim
    rank = len(dims) if value.type.tensor_type.HasField("shape") else None
    if rank == 1 + len(shape):
        return
    known = [d.dim_value for d in dims[1:] if d.HasField("dim_value")]
    if rank is not None and len(known) == rank - 1 and \
            int(np.prod(known)) != int(np.prod(shape)):
        raise ExportFailed(
            f"skl2onnx's output {value.name} has shape "
            f"{[d.dim_value or d.dim_param or '?' for d in dims]}, which does not hold "
            f"what scikit-learn returns per row ({shape})",
            "please report it with the estimator and skl2onnx versions")
    inner = _unused(graph, f"{value.name}_skl2onnx")
    _replace(graph, {value.name: inner})
    target = _unused(graph, f"{value.name}_shape")
    graph.initializer.append(numpy_helper.from_array(
        np.array([-1, *shape], dtype=np.int64), target))
    node_name = _unused(graph, f"onnxport_reshape_{value.name}")
    graph.node.append(helper.make_node("Reshape", [inner, target], [value.name],
                                       name=node_name))


def _rename(graph: onnx.GraphProto, mapping: dict[str, str]) -> None:
    """Rename tensors everywhere at once (so swapping two names works)."""
    mapping = {old: new for old, new in mapping.items() if old != new}
    if not mapping:
        return
    taken = _all_names(graph) - set(mapping)
    clash = sorted(set(mapping.values()) & taken)
    if clash:
        raise BadInput(f"output name {clash[0]!r} is already the name of a tensor inside "
                       "the converted graph", "choose other --output-names")
    _replace(graph, mapping)


def _replace(graph: onnx.GraphProto, mapping: dict[str, str]) -> None:
    """Rename top-level tensors: where they are made, described, and read (subgraphs
    read outer-scope tensors too; ONNX forbids them to make one of the same name)."""
    for node in graph.node:
        node.output[:] = [mapping.get(n, n) for n in node.output]
    for value in graph.value_info:
        value.name = mapping.get(value.name, value.name)
    for g in _graphs(graph):
        for node in g.node:
            node.input[:] = [mapping.get(n, n) for n in node.input]


def _prune(graph: onnx.GraphProto) -> None:
    """Drop nodes and initializers no output depends on (those of a dropped output)."""
    needed = {o.name for o in graph.output}
    kept = []
    for node in reversed(graph.node):
        if any(o in needed for o in node.output if o):
            kept.append(node)
            needed.update(node.input)
            needed.update(_subgraph_inputs(node))
    if len(kept) == len(graph.node):
        return
    kept.reverse()
    del graph.node[:]
    graph.node.extend(kept)
    initializers = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    values = [v for v in graph.value_info if v.name in needed]
    del graph.value_info[:]
    graph.value_info.extend(values)


def _subgraph_inputs(node: onnx.NodeProto) -> set[str]:
    """Every name a node's subgraphs read (outer-scope values among them)."""
    names: set[str] = set()
    for attribute in node.attribute:
        for sub in [attribute.g] * attribute.HasField("g") + list(attribute.graphs):
            for inner in _graphs(sub):
                for n in inner.node:
                    names.update(n.input)
    return names


def _graphs(graph: onnx.GraphProto) -> Iterable[onnx.GraphProto]:
    yield graph
    for node in graph.node:
        for attribute in node.attribute:
            for sub in [attribute.g] * attribute.HasField("g") + list(attribute.graphs):
                yield from _graphs(sub)


def _all_names(graph: onnx.GraphProto) -> set[str]:
    names = set()
    for g in _graphs(graph):
        names.update(v.name for v in [*g.input, *g.output, *g.value_info])
        names.update(t.name for t in g.initializer)
        for node in g.node:
            names.update(node.input)
            names.update(node.output)
    names.discard("")
    return names


def _unused(graph: onnx.GraphProto, base: str) -> str:
    names = _all_names(graph) | {n.name for n in graph.node}
    candidate, i = base, 1
    while candidate in names:
        i += 1
        candidate = f"{base}_{i}"
    return candidate
