"""The child process that runs onnxruntime's float16 converter:
`python -m onnxport_float16.child REQUEST.json`.

It converts one file into another and prints one line `ONNXPORT-RESULT {json}`: the
nodes that now compute in float16 and those kept in float32, per op type, and the Casts
inserted (nothing is written when no node was converted). Anything else (an exception,
a native abort in onnx's shape inference, a hang) is seen by the parent as an exit
code, a signal or a timeout, with the tail of stderr.

It runs in its own process because importing `onnxruntime.transformers` appends
onnxruntime's folder to `sys.path` (its modules, named `float16`, `metrics`,
`benchmark`, ..., import each other as top-level modules). Taking the entry back after
the import is no fix: onnxruntime's own modules imported later in the same process
(`onnxruntime.quantization`'s pre-processing, which the quantize pass runs) need it,
and fail with "No module named 'fusion_utils'" without it.
"""

from __future__ import annotations

import heapq
import re
import sys
from collections import Counter

from onnxport.child_tool import read_request, send_answer

FLOAT, FLOAT16 = 1, 10  # onnx.TensorProto element types
# How the converter names the Casts it inserts (graph edges, around blocked nodes).
_INSERTED = re.compile(r"^graph_(input|output)_cast\d+$|_cast_to_(fp32|bfloat16|fp16)_node$")


def main(argv: list[str]) -> int:
    request = read_request(argv)
    import onnx
    from onnxruntime.transformers.float16 import (DEFAULT_OP_BLOCK_LIST,
                                                  convert_float_to_float16)

    blocked = sorted({*DEFAULT_OP_BLOCK_LIST, *request["block_ops"]})
    model = convert_float_to_float16(onnx.load(request["input"]), keep_io_types=True,
                                     op_block_list=blocked)
    topological(model.graph)
    converted, kept, casts = census(model)
    if converted:
        onnx.save(model, request["output"], save_as_external_data=request["external_data"],
                  all_tensors_to_one_file=True, location=request["data_file"])
    send_answer({"ops_converted": converted, "ops_kept_fp32": kept,
                 "casts_inserted": casts})
    return 0


def census(model) -> tuple[dict[str, int], dict[str, int], int]:
    """Per op type, the model's own nodes that compute in float16 and those left in
    float32 (they touch float32 values and no float16 one); and the Casts inserted."""
    import onnx

    try:
        typed = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:  # e.g. over 2 GB: the types the converter declared
        typed = model
    graph = typed.graph
    types = {v.name: v.type.tensor_type.elem_type
             for v in [*graph.input, *graph.value_info, *graph.output]
             if v.type.HasField("tensor_type")}
    types.update({init.name: init.data_type for init in graph.initializer})
    converted, kept, casts = Counter(), Counter(), 0
    for node in graph.node:
        if node.op_type == "Cast" and _INSERTED.search(node.name):
            casts += 1
            continue
        seen = {types.get(name) for name in [*node.input, *node.output]}
        if FLOAT16 in seen:
            converted[node.op_type] += 1
        elif FLOAT in seen:
            kept[node.op_type] += 1
    return dict(sorted(converted.items())), dict(sorted(kept.items())), casts


def topological(graph) -> None:
    """The converter appends its Casts at the end of the node list; ONNX wants each node
    after the nodes that make what it reads (TensorRT's parser reads them in order).
    Reorder so, keeping the original order where it is free (values a subgraph reads
    from outside count); a graph with a cycle is left for the verification to refuse."""
    nodes = list(graph.node)
    maker = {name: k for k, node in enumerate(nodes) for name in node.output if name}
    needs = [{maker[name] for name in _reads(node) if maker.get(name, k) != k}
             for k, node in enumerate(nodes)]
    users: dict[int, list[int]] = {}
    for k, deps in enumerate(needs):
        for dep in deps:
            users.setdefault(dep, []).append(k)
    waiting = [len(deps) for deps in needs]
    ready = [k for k, count in enumerate(waiting) if not count]
    heapq.heapify(ready)
    order = []
    while ready:
        k = heapq.heappop(ready)
        order.append(k)
        for user in users.get(k, ()):
            waiting[user] -= 1
            if not waiting[user]:
                heapq.heappush(ready, user)
    if len(order) == len(nodes) and order != sorted(order):
        del graph.node[:]
        graph.node.extend(nodes[k] for k in order)


def _reads(node) -> set[str]:
    """The values a node reads: its inputs and whatever its subgraphs' nodes read."""
    names = set(node.input)
    for attr in node.attribute:
        for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
            for inner in sub.node:
                names |= _reads(inner)
    return names


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
