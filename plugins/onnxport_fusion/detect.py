"""Read an ONNX graph: is it a transformer, which kind (bert, gpt2, vit), how many heads.

Everything here looks at the top-level graph of a loaded `onnx.ModelProto` (weights need
not be loaded: only small constants are read) and answers with a value and the reason,
for the pass's settings. numpy and onnx are imported inside the functions that need them.

- A transformer has at least one attention block (a Softmax fed by a MatMul, whose
  result feeds a MatMul) or a layer normalisation (LayerNormalization, or its
  ReduceMean - Sub - Pow/Mul decomposition).
- gpt2 (decoder): a causal mask: a `Trilu`, a comparison of two position ranges
  (`kv_idx <= q_idx`, how transformers >= 4.4x builds it), or a triangular constant
  (the `bias` buffer of older GPT-2 exports).
- vit: a Conv patch embedding near the input (kernel == stride > 1) whose output is
  flattened and transposed into a token sequence.
- bert: everything else.
- heads: the head-splitting Reshape before a Transpose(0, 2, 1, 3) holds the head size
  (and often -1 for the head count, which is why onnxruntime's own detection fails on
  current Hugging Face exports); the hidden size is the LayerNormalization width.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

_COMPARISONS = ("Less", "LessOrEqual", "Greater", "GreaterOrEqual")
_INDEX_OPS = ("Unsqueeze", "Reshape", "Cast", "Add", "Sub", "Expand", "Slice", "Squeeze")
_SCORE_OPS = ("Add", "Mul", "Div", "Where", "Cast", "Sub")  # between QK MatMul and Softmax
_PROB_OPS = ("Cast", "Where", "Dropout", "Identity")  # between Softmax and the V MatMul
_PRE_CONV = ("Cast", "Sub", "Div", "Mul", "Add", "Identity", "Transpose")
_TO_TOKENS = ("Reshape", "Flatten", "Transpose")
_HEAD_PERMS = ([0, 2, 1, 3], [0, 2, 3, 1])
_MAX_CONSTANT = 1 << 22  # elements: larger constants are weights, not masks or shapes


@dataclass
class Graph:
    """An index of a model's top-level graph: who produces and who consumes each name."""

    nodes: list[Any]
    producer: dict[str, Any]
    consumers: dict[str, list[Any]]
    initializers: dict[str, Any]
    inputs: set[str]
    _constants: dict[str, Any] = field(default_factory=dict)

    def children(self, node) -> list[Any]:
        return [c for out in node.output for c in self.consumers.get(out, [])]

    def constant(self, name: str):
        """The value of an initializer or Constant output, as a numpy array, or None."""
        if name in self._constants:
            return self._constants[name]
        import numpy as np
        from onnx import helper, numpy_helper

        value = None
        tensor = self.initializers.get(name)
        node = self.producer.get(name)
        if tensor is None and node is not None and node.op_type == "Constant" and \
                node.attribute:
            attr = helper.get_attribute_value(node.attribute[0])
            if hasattr(attr, "dims"):
                tensor = attr
            elif isinstance(attr, (int, float, list)):  # value_int(s), value_float(s)
                value = np.array(attr)
        if tensor is not None and _elements(tensor) <= _MAX_CONSTANT and \
                tensor.data_location != 1:  # EXTERNAL: not loaded, and never a mask
            try:
                value = numpy_helper.to_array(tensor)
            except Exception:
                value = None
        self._constants[name] = value
        return value


def _elements(tensor) -> int:
    count = 1
    for dim in tensor.dims:
        count *= dim
    return count


def index(model) -> Graph:
    graph = model.graph
    producer: dict[str, Any] = {}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for out in node.output:
            producer[out] = node
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    initializers = {t.name: t for t in graph.initializer}
    inputs = {i.name for i in graph.input if i.name not in initializers}
    return Graph(list(graph.node), producer, consumers, initializers, inputs)


def _ancestors(graph: Graph, name: str, through: tuple[str, ...], depth: int):
    """Nodes reachable upwards from `name` through `through` ops, `depth` hops at most."""
    frontier, seen = [name], set()
    for _ in range(depth):
        nxt = []
        for value in frontier:
            node = graph.producer.get(value)
            if node is None or id(node) in seen:
                continue
            seen.add(id(node))
            yield node
            if node.op_type in through:
                nxt.extend(node.input)
        frontier = nxt


def _descendants(graph: Graph, node, through: tuple[str, ...], depth: int):
    frontier, seen = [node], set()
    for _ in range(depth):
        nxt = []
        for current in frontier:
            for child in graph.children(current):
                if id(child) in seen:
                    continue
                seen.add(id(child))
                yield child
                if child.op_type in through:
                    nxt.append(child)
        frontier = nxt


# --------------------------------------------------------------------------- transformer?


@dataclass
class Evidence:
    attention: int  # Softmax nodes between a QK MatMul and a V MatMul
    layer_norms: int  # LayerNormalization nodes and decomposed layer norms

    @property
    def transformer(self) -> bool:
        return bool(self.attention or self.layer_norms)


def evidence(graph: Graph) -> Evidence:
    attention = 0
    for node in graph.nodes:
        if node.op_type != "Softmax" or not node.input:
            continue
        scores = any(n.op_type == "MatMul" for n in
                     _ancestors(graph, node.input[0], _SCORE_OPS, 4))
        values = any(n.op_type == "MatMul"
                     for n in _descendants(graph, node, _PROB_OPS, 3))
        attention += scores and values
    layer_norms = sum(n.op_type in ("LayerNormalization", "SimplifiedLayerNormalization",
                                    "SkipLayerNormalization") for n in graph.nodes)
    for node in graph.nodes:  # x - mean(x), then squared: a decomposed layer norm
        if node.op_type != "Sub" or len(node.input) < 2:
            continue
        mean = graph.producer.get(node.input[1])
        if mean is None or mean.op_type != "ReduceMean" or mean.input[0] != node.input[0]:
            continue
        if any(c.op_type in ("Pow", "Mul") for c in graph.children(node)):
            layer_norms += 1
    return Evidence(attention, layer_norms)


# --------------------------------------------------------------------------- model type


def detect_model_type(graph: Graph) -> tuple[str, str]:
    """(model type for onnxruntime's optimizer, why)."""
    causal = _causal_mask(graph)
    if causal:
        return "gpt2", f"causal mask ({causal})"
    patch = _patch_embedding(graph)
    if patch:
        return "vit", f"Conv patch embedding at the input ({patch})"
    return "bert", "no causal mask and no Conv patch embedding: an encoder"


def _causal_mask(graph: Graph) -> str:
    for node in graph.nodes:
        if node.op_type == "Trilu":
            return f"Trilu node {node.name or node.output[0]}"
    for node in graph.nodes:
        if node.op_type in _COMPARISONS and len(node.input) == 2:
            ranged = [any(a.op_type == "Range" for a in
                          _ancestors(graph, name, _INDEX_OPS, 6)) for name in node.input]
            if all(ranged):
                return f"{node.op_type} of two position ranges"
    for name in [*graph.initializers, *(n.output[0] for n in graph.nodes
                                         if n.op_type == "Constant")]:
        if _triangular(graph, name):
            return f"triangular constant {name}"
    return ""


def _triangular(graph: Graph, name: str) -> bool:
    tensor = graph.initializers.get(name)
    if tensor is not None and (len(tensor.dims) < 2 or tensor.dims[-1] != tensor.dims[-2]
                               or tensor.dims[-1] < 2):
        return False  # cheap refusal before reading a weight
    value = graph.constant(name)
    if value is None or value.ndim < 2 or value.shape[-1] != value.shape[-2] or \
            value.shape[-1] < 2:
        return False
    import numpy as np

    square = value.reshape(-1, value.shape[-1], value.shape[-1])[0]
    if len(np.unique(square)) != 2:
        return False
    # Positions holding the bottom-left value form the lower triangle, with or without
    # the diagonal, for every convention: 1/True/0.0 allowed below, 0/False/-inf above,
    # or the inverse.
    size = square.shape[0]
    same = square == square[size - 1, 0]
    ones = np.ones((size, size), dtype=bool)
    return bool((same == np.tril(ones)).all() or (same == np.tril(ones, -1)).all())


def _patch_embedding(graph: Graph) -> str:
    for node in graph.nodes:
        if node.op_type != "Conv" or len(node.input) < 2:
            continue
        attrs = {a.name: list(a.ints) for a in node.attribute if a.ints}
        kernel, strides = attrs.get("kernel_shape"), attrs.get("strides")
        weight = graph.initializers.get(node.input[1])
        if kernel is None and weight is not None:
            kernel = list(weight.dims[2:])
        if not kernel or kernel != strides or min(kernel) < 2:
            continue
        near_input = node.input[0] in graph.inputs or any(
            set(a.input) & graph.inputs
            for a in _ancestors(graph, node.input[0], _PRE_CONV, 3))
        if not near_input:
            continue
        after = [c.op_type for c in _descendants(graph, node, _TO_TOKENS, 3)]
        if ("Reshape" in after or "Flatten" in after) and "Transpose" in after:
            return "kernel = stride = " + "x".join(map(str, kernel))
    return ""


# --------------------------------------------------------------------------- heads


def detect_heads(graph: Graph) -> tuple[int, int, str]:
    """(num_heads, hidden_size, why); (0, 0, why not) when the graph does not say."""
    hidden = _layer_norm_width(graph)
    found: Counter[tuple[int, int]] = Counter()
    for node in graph.nodes:
        if node.op_type != "Reshape" or len(node.input) < 2:
            continue
        if not any(c.op_type == "Transpose" and _perm(c) in _HEAD_PERMS
                   for c in graph.children(node)):
            continue
        shape = _shape_elements(graph, node.input[1])
        if shape is None or len(shape) != 4:
            continue
        heads, head_size = shape[2], shape[3]
        if head_size is None or head_size <= 0:
            continue
        if heads is not None and heads > 0:
            found[(heads, heads * head_size)] += 1
        elif hidden and hidden % head_size == 0:
            found[(hidden // head_size, hidden)] += 1
    if not found:
        return 0, 0, ("no head-splitting Reshape with a constant head size: left to "
                      "onnxruntime's optimizer")
    (heads, size), count = found.most_common(1)[0]
    return heads, size, (f"{count} head-splitting Reshape(s): {heads} heads of "
                         f"{size // heads}" + (f", LayerNormalization width {hidden}"
                                               if hidden else ""))


def _perm(node) -> list[int]:
    return next((list(a.ints) for a in node.attribute if a.name == "perm"), [])


def _shape_elements(graph: Graph, name: str) -> list[int | None] | None:
    """A shape input's elements: from a constant, or per element of a Concat."""
    value = graph.constant(name)
    if value is not None:
        return [int(v) for v in value.reshape(-1)]
    node = graph.producer.get(name)
    if node is None or node.op_type != "Concat":
        return None
    elements: list[int | None] = []
    for part in node.input:
        part_value = graph.constant(part)
        if part_value is None:
            elements.append(None)  # a dynamic dimension (batch, sequence)
        else:
            elements.extend(int(v) for v in part_value.reshape(-1))
    return elements


def _layer_norm_width(graph: Graph) -> int:
    widths: Counter[int] = Counter()
    for node in graph.nodes:
        if node.op_type == "LayerNormalization" and len(node.input) > 1:
            scale = graph.initializers.get(node.input[1])
            if scale is not None and len(scale.dims) == 1:
                widths[int(scale.dims[0])] += 1
    return widths.most_common(1)[0][0] if widths else 0
