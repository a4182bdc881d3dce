"""Finishing tf2onnx's graph: the user's names in the user's order, a named batch axis,
and a check that every node is a real ONNX op (tf2onnx leaves the TensorFlow ops it
cannot convert in the graph, under their TensorFlow names, and only logs them)."""

from __future__ import annotations

from collections import Counter
from typing import Iterator

import onnx
from onnx import helper

ONNXRUNTIME_DOMAINS = ("com.microsoft",)  # contrib ops onnxruntime implements


def rename_interface(model: onnx.ModelProto, inputs: dict[str, str],
                     outputs: dict[str, str]) -> None:
    """Rename graph inputs and outputs (tf2onnx's name -> the user's, in the user's
    order) everywhere they are used, subgraphs included, and order them as given: a
    tf.function returning a dict has its outputs sorted by key."""
    graph = model.graph
    mapping = {**inputs, **outputs}  # tf2onnx's names are distinct: dict keys, specs
    final = set(mapping.values())
    taken = set(_all_names(graph))
    # an internal tensor that already carries one of the final names moves aside first
    clashes = {name: _fresh(name, taken) for name in final
               if name in taken and name not in mapping}
    _rename(graph, clashes)
    _rename(graph, mapping)
    _reorder(graph.input, list(inputs.values()))
    _reorder(graph.output, list(outputs.values()))


def name_batch_axis(model: onnx.ModelProto, name: str = "batch") -> None:
    """tf2onnx calls the unknown batch axis unk__N: call it `batch` on every input and
    on every output whose first axis is symbolic."""
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_param = name


def unsupported_ops(model: onnx.ModelProto, opset: int) -> Counter:
    """Node types that are neither ONNX ops at `opset` nor onnxruntime contrib ops."""
    found: Counter = Counter()
    versions = {o.domain or "": o.version for o in model.opset_import}
    for node in _nodes(model.graph):
        domain = node.domain or ""
        if domain in ONNXRUNTIME_DOMAINS:
            continue
        if domain in ("", "ai.onnx", "ai.onnx.ml"):
            version = versions.get(domain, opset)
            if onnx.defs.has(node.op_type, version, domain):
                continue
        found[node.op_type if not domain else f"{domain}.{node.op_type}"] += 1
    return found


def op_histogram(model: onnx.ModelProto) -> Counter:
    return Counter(node.op_type for node in _nodes(model.graph))


# ----------------------------------------------------------------------------- helpers


def _nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    for node in graph.node:
        yield node
        for sub in _subgraphs(node):
            yield from _nodes(sub)


def _subgraphs(node: onnx.NodeProto) -> Iterator[onnx.GraphProto]:
    for attribute in node.attribute:
        if attribute.type == onnx.AttributeProto.GRAPH:
            yield attribute.g
        elif attribute.type == onnx.AttributeProto.GRAPHS:
            yield from attribute.graphs


def _all_names(graph: onnx.GraphProto) -> Iterator[str]:
    for value in [*graph.input, *graph.output, *graph.value_info]:
        yield value.name
    for tensor in graph.initializer:
        yield tensor.name
    for node in graph.node:
        yield from node.input
        yield from node.output
        for sub in _subgraphs(node):
            yield from _all_names(sub)


def _rename(graph: onnx.GraphProto, mapping: dict[str, str]) -> None:
    if not mapping:
        return
    for value in [*graph.input, *graph.output, *graph.value_info]:
        value.name = mapping.get(value.name, value.name)
    for tensor in graph.initializer:
        tensor.name = mapping.get(tensor.name, tensor.name)
    for node in graph.node:
        node.input[:] = [mapping.get(n, n) for n in node.input]
        node.output[:] = [mapping.get(n, n) for n in node.output]
        for sub in _subgraphs(node):
            _rename(sub, mapping)


def _reorder(values, order: list[str]) -> None:
    by_name = {v.name: v for v in values}
    missing = [n for n in order if n not in by_name]
    if missing:
        raise ValueError(f"tf2onnx's graph has no tensor named {', '.join(missing)}")
    ordered = [by_name[n] for n in order] + [v for v in values if v.name not in order]
    copies = []
    for original in ordered:
        copy = type(original)()
        copy.CopyFrom(original)
        copies.append(copy)
    del values[:]
    values.extend(copies)


def _fresh(name: str, taken: set[str]) -> str:
    candidate, index = f"{name}__tf", 1
    while candidate in taken:
        index += 1
        candidate = f"{name}__tf{index}"
    taken.add(candidate)
    return candidate
