"""Rewrite an ONNX graph in float16, by hand with the `onnx` package.

Every float32 value gets a *home* type: float16 when the node that makes it is
converted (or, for a weight, when a converted node reads it), float32 for the graph's
inputs and for what a node kept in float32 makes. Wherever a node wants the other type,
one Cast is inserted right after the value is made and shared by every such reader.
Graph outputs a converted node makes are renamed `<name>_fp16` inside the graph and
cast back under their own name, so the model's interface stays float32 and callers do
not change (onnxconverter-common's keep_io_types).

A node stays float32 when its op type is blocked (options.BLOCKED_OPS, the user's
`block_ops`), its name is in `block_nodes`, it is outside the default ONNX domain (its
float16 support is unknown), it has subgraphs (If/Loop/Scan: the subgraph is left as it
is and the outer values it reads are cast back to float32 for it), or the ONNX schema
of its opset gives it no float16 form. The schema also pins inputs that are float32 by
definition (Resize's scales). Weights beyond float16's range are clipped to +-65504 and
counted; that count becomes a warning.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import onnx
from onnx import AttributeProto, TensorProto, helper, numpy_helper

FLOAT, FLOAT16 = TensorProto.FLOAT, TensorProto.FLOAT16
FP16_MAX = float(np.finfo(np.float16).max)  # 65504
SHAPE_ONLY = {"Shape", "Size"}  # read only the shape: any float type will do, no Cast
_DEFAULT_DOMAINS = ("", "ai.onnx")
_GRAPH_ATTRS = (AttributeProto.GRAPH, AttributeProto.GRAPHS)
_TYPE_ATTRS = ("dtype", "output_datatype")  # a converted node's float32 output type


@dataclass
class Fp16Graph:
    """The converted model and what the conversion did, for the stage's settings."""

    model: onnx.ModelProto
    converted: Counter = field(default_factory=Counter)  # op type -> nodes now float16
    kept: dict[str, list] = field(default_factory=dict)  # op type -> [nodes, why]
    casts: int = 0
    initializers: int = 0  # float32 weights (and Constant values) stored as float16
    clipped: int = 0  # weight values beyond +-65504, set to +-65504
    flushed: int = 0  # nonzero weight values below float16's smallest subnormal, now 0
    untyped: int = 0  # node outputs shape inference gave no type (cannot be cast)


def value_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every tensor of the main graph that the model declares."""
    graph = model.graph
    types: dict[str, int] = {}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        if value.type.HasField("tensor_type"):
            types[value.name] = value.type.tensor_type.elem_type
    for init in graph.initializer:
        types[init.name] = init.data_type
    for sparse in graph.sparse_initializer:
        types[sparse.values.name] = sparse.values.data_type
    return types


def convert(model: onnx.ModelProto, types: dict[str, int], blocked_ops: dict[str, str],
            blocked_nodes: Iterable[str] = ()) -> Fp16Graph:
    """Convert `model` (weights loaded) in place; `types` comes from value_types() of the
    shape-inferred model. Check the saved result with type_check()."""
    graph = model.graph
    result = Fp16Graph(model)
    opset = next((o.version for o in model.opset_import if o.domain in _DEFAULT_DOMAINS), 0)
    blocked_nodes = set(blocked_nodes)
    float32 = {name for name, t in types.items() if t == FLOAT}
    initializers = {init.name: init for init in graph.initializer}
    inputs = {v.name for v in graph.input} - set(initializers)
    nodes = list(graph.node)

    # Which nodes stay float32, and which inputs of the others are float32 by definition.
    reasons: list[str | None] = []
    pinned: list[set[int]] = []
    for node in nodes:
        why, fixed = _why_float32(node, opset, blocked_ops, blocked_nodes, types)
        reasons.append(why)
        pinned.append(fixed)
    free = [_free_names(node) for node in nodes]  # outer values subgraphs read

    def wants(k: int, position: int) -> int | None:
        if nodes[k].op_type in SHAPE_ONLY and reasons[k] is None:
            return None
        if reasons[k] is not None or position in pinned[k]:
            return FLOAT
        return FLOAT16

    # Who reads each float32 value, in which type (graph outputs read float32).
    outputs = {v.name for v in graph.output}
    readers: dict[str, list[int | None]] = defaultdict(list)
    for k, node in enumerate(nodes):
        for position, name in enumerate(node.input):
            if name in float32:
                readers[name].append(wants(k, position))
        for name in free[k]:
            if name in float32:
                readers[name].append(FLOAT)
    for name in outputs:
        readers[name].append(FLOAT)
    for k, node in enumerate(nodes):  # a constant only float32 readers read stays so
        if reasons[k] is None and node.op_type in ("Constant", "ConstantOfShape") and \
                node.output[0] in float32 and readers[node.output[0]] and \
                FLOAT16 not in readers[node.output[0]]:
            reasons[k] = "read only in float32"

    # Graph outputs a converted node makes: renamed inside, cast back under their name.
    renamed: dict[str, str] = {}
    taken = _all_names(graph)
    for k, node in enumerate(nodes):
        if reasons[k] is None:
            for name in node.output:
                if name in outputs and name in float32 and name not in renamed:
                    renamed[name] = _unique(f"{name}_fp16", taken)
    for node in nodes:
        node.input[:] = [renamed.get(n, n) for n in node.input]
        node.output[:] = [renamed.get(n, n) for n in node.output]
    for value in graph.value_info:
        value.name = renamed.get(value.name, value.name)
    for old, new in renamed.items():
        float32.add(new)
        readers[new] = readers.pop(old)

    # Home type of every float32 value that has a maker (input, weight or node).
    home: dict[str, int] = {}
    for name in inputs & float32:
        home[name] = FLOAT
    for sparse in graph.sparse_initializer:
        if sparse.values.name in float32:
            home[sparse.values.name] = FLOAT
    declared_inputs = {v.name for v in graph.input}
    for name in set(initializers) & float32:
        # an initializer that is also a graph input (IR < 4) or output keeps its type
        keep = name in declared_inputs or name in outputs
        home[name] = FLOAT16 if FLOAT16 in readers.get(name, []) and not keep else FLOAT
    for k, node in enumerate(nodes):
        for name in node.output:
            if name in float32:
                home[name] = FLOAT if reasons[k] is not None else FLOAT16
            elif name and name not in types:
                result.untyped += 1

    # One shared Cast per (value, type) some reader needs, placed after its maker.
    casts: dict[tuple[str, int], str] = {}
    after: dict[str, list] = defaultdict(list)  # value -> Cast nodes that read it

    def cast_of(name: str, to: int, forced: str | None = None) -> str:
        if (name, to) not in casts:
            suffix = "fp16" if to == FLOAT16 else "fp32"
            out = forced or _unique(f"{name}_to_{suffix}", taken)
            casts[name, to] = out
            after[name].append(helper.make_node(
                "Cast", [name], [out], to=to, name=_unique(f"Cast_{out}", taken)))
        return casts[name, to]

    for old, new in renamed.items():
        cast_of(new, FLOAT, forced=old)
    for k, node in enumerate(nodes):
        for position, name in enumerate(node.input):
            want = wants(k, position)
            if name in home and want is not None and want != home[name]:
                node.input[position] = cast_of(name, want)
        mapping = {name: cast_of(name, FLOAT) for name in free[k]
                   if home.get(name) == FLOAT16}
        if mapping:
            for attr in node.attribute:
                for sub in _subgraphs(attr):
                    _rename_free(sub, mapping)

    # Rewrite weights, constants and type attributes of the converted nodes.
    for name, init in initializers.items():
        if home.get(name) == FLOAT16:
            init.CopyFrom(_to_fp16(init, result))
            result.initializers += 1
    for k, node in enumerate(nodes):
        if reasons[k] is not None:
            if any(n in float32 for n in [*node.input, *node.output]) or free[k] & float32:
                entry = result.kept.setdefault(node.op_type, [0, reasons[k]])
                entry[0] += 1
            continue
        if not any(n in float32 for n in [*node.input, *node.output]):
            continue
        if node.op_type not in SHAPE_ONLY:
            result.converted[node.op_type] += 1
        _retype_node(node, result)

    # Declared types: value_info and converted initializers that are also inputs (IR < 4).
    for value in [*graph.value_info, *graph.input]:
        if home.get(value.name) == FLOAT16 and value.type.HasField("tensor_type"):
            value.type.tensor_type.elem_type = FLOAT16
    sources = [n for name in [*inputs, *initializers,
                              *(s.values.name for s in graph.sparse_initializer)]
               for n in after.pop(name, [])]
    ordered = list(sources)
    for node in nodes:
        ordered.append(node)
        for name in node.output:
            ordered.extend(after.pop(name, []))
    result.casts = len(casts)
    del graph.node[:]
    graph.node.extend(ordered)
    return result


def _why_float32(node, opset: int, blocked_ops: dict[str, str], blocked_nodes: set[str],
                 types: dict[str, int]) -> tuple[str | None, set[int]]:
    """Why the node stays float32 (None: it is converted), and which of its inputs the
    ONNX schema types float32 only."""
    if node.domain not in _DEFAULT_DOMAINS:
        return f"domain {node.domain}: float16 support unknown", set()
    if node.name and node.name in blocked_nodes:
        return "listed in fp16.block_nodes", set()
    if node.op_type in blocked_ops:
        return blocked_ops[node.op_type], set()
    if any(attr.type in _GRAPH_ATTRS for attr in node.attribute):
        return "has subgraphs: they stay float32 (outer values cast for them)", set()
    try:
        schema = onnx.defs.get_schema(node.op_type, opset, "")
    except Exception:
        return f"no ONNX schema for {node.op_type} at opset {opset}", set()
    if node.op_type == "Constant" and any(a.name == "sparse_value" for a in node.attribute):
        return "sparse constant", set()
    allowed = {c.type_param_str: set(c.allowed_type_strs) for c in schema.type_constraints}
    pinned: set[int] = set()
    for kind, names, params in (("input", node.input, schema.inputs),
                                ("output", node.output, schema.outputs)):
        for position, name in enumerate(names):
            if not name or types.get(name) != FLOAT or not params:
                continue
            param = params[min(position, len(params) - 1)]
            strs = allowed.get(param.type_str, {param.type_str})
            if any(s.startswith(("seq(", "optional(")) for s in strs):
                return "works on sequences or optionals", set()
            if "tensor(float16)" in strs:
                continue
            if kind == "input" and param.type_str not in allowed:
                pinned.add(position)  # float32 by definition, e.g. Resize's scales
                continue
            return (f"the ONNX schema of {node.op_type}-{schema.since_version} has no "
                    f"float16 {kind} '{param.name}'"), set()
    return None, pinned


def _retype_node(node, result: Fp16Graph) -> None:
    """The attributes that fix a converted node's float32 output type."""
    if node.op_type == "Constant":
        for attr in list(node.attribute):
            if attr.name == "value" and attr.t.data_type == FLOAT:
                attr.t.CopyFrom(_to_fp16(attr.t, result))
                result.initializers += 1
            elif attr.name in ("value_float", "value_floats"):
                values = [attr.f] if attr.name == "value_float" else list(attr.floats)
                array = np.asarray(values if attr.name == "value_floats" else values[0],
                                   np.float32)
                node.attribute.remove(attr)
                tensor = _to_fp16(numpy_helper.from_array(array), result)
                node.attribute.append(helper.make_attribute("value", tensor))
                result.initializers += 1
    elif node.op_type == "ConstantOfShape":
        value = next((a for a in node.attribute if a.name == "value"), None)
        if value is None:  # the default is a float32 zero
            node.attribute.append(helper.make_attribute(
                "value", numpy_helper.from_array(np.zeros(1, np.float16), "value")))
        elif value.t.data_type == FLOAT:
            value.t.CopyFrom(_to_fp16(value.t, result))
    elif node.op_type == "Cast":
        for attr in node.attribute:
            if attr.name == "to" and attr.i == FLOAT:
                attr.i = FLOAT16
    for attr in node.attribute:
        if attr.name in _TYPE_ATTRS and attr.type == AttributeProto.INT and attr.i == FLOAT:
            attr.i = FLOAT16


def _to_fp16(tensor: TensorProto, result: Fp16Graph) -> TensorProto:
    array = numpy_helper.to_array(tensor)
    finite = np.isfinite(array)
    beyond = finite & (np.abs(array) > FP16_MAX)
    result.clipped += int(np.count_nonzero(beyond))
    if beyond.any():
        array = np.where(beyond, np.sign(array) * FP16_MAX, array)
    with np.errstate(over="ignore", under="ignore"):
        half = array.astype(np.float16)
    result.flushed += int(np.count_nonzero((array != 0) & (half == 0)))
    return numpy_helper.from_array(half, tensor.name)


def _subgraphs(attr) -> list:
    if attr.type == AttributeProto.GRAPH:
        return [attr.g]
    if attr.type == AttributeProto.GRAPHS:
        return list(attr.graphs)
    return []


def _free_names(node) -> set[str]:
    """Values of the enclosing graph that the node's subgraphs read without an input."""
    names: set[str] = set()
    for attr in node.attribute:
        for sub in _subgraphs(attr):
            names |= _graph_free_names(sub)
    return names


def _graph_free_names(graph) -> set[str]:
    defined = {v.name for v in graph.input} | {i.name for i in graph.initializer} | \
        {s.values.name for s in graph.sparse_initializer}
    free: set[str] = set()
    for node in graph.node:
        free |= {n for n in node.input if n and n not in defined}
        free |= _free_names(node) - defined
        defined |= set(node.output)
    return free


def _rename_free(graph, mapping: dict[str, str]) -> None:
    """Point a subgraph's reads of outer values at their float32 Casts (a name the
    subgraph defines itself shadows the outer one from there on)."""
    mapping = {k: v for k, v in mapping.items()
               if k not in {i.name for i in graph.input}
               and k not in {i.name for i in graph.initializer}}
    for node in graph.node:
        node.input[:] = [mapping.get(n, n) for n in node.input]
        for attr in node.attribute:
            for sub in _subgraphs(attr):
                _rename_free(sub, mapping)
        for name in node.output:
            mapping.pop(name, None)


def _all_names(graph) -> set[str]:
    names = {v.name for v in [*graph.input, *graph.output, *graph.value_info]}
    names |= {i.name for i in graph.initializer}
    for node in graph.node:
        names |= set(node.input) | set(node.output) | {node.name}
        for attr in node.attribute:
            for sub in _subgraphs(attr):
                names |= _all_names(sub)
    return names


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name}_{n}"
    taken.add(candidate)
    return candidate


def type_check(model: onnx.ModelProto, path, scratch) -> bool:
    """Raise ValueError unless the saved float16 model at `path` type-checks (strict
    shape inference, run on the file so that size and external data do not matter).
    False when it cannot be checked here: ops of other domains and local functions have
    no schema (the core's verification still runs them)."""
    if model.functions or any(n.domain not in _DEFAULT_DOMAINS for n in model.graph.node):
        return False
    try:
        onnx.shape_inference.infer_shapes_path(str(path), str(scratch), check_type=True,
                                               strict_mode=True)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ValueError(f"the float16 graph does not type-check: {first}") from exc
    finally:
        Path(scratch).unlink(missing_ok=True)
    return True
