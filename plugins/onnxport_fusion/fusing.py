"""Fuse one model with onnxruntime's transformer optimizer and decide whether to keep it.

The graph is read first (detect.py): a model with no attention block and no layer norm
is skipped before anything runs, and so is one with no attention block while layer norms
are left to the session (norms "keep", the default). The optimizer then runs in a child
process (child.py) with a time limit, its working and temporary directory inside the
pass's work directory. Its result is kept only when the interface is unchanged (the same
input and output names in the same order, the same element types and ranks, every
symbolic dimension still symbolic; the original input/output types are copied back so
dimension names stay as exported) and it fused something the session optimizer would
not: the op histograms before and after must show more fused ops (com.microsoft contrib
ops such as Attention, or LayerNormalization), and not only Gelu, BiasGelu, FastGelu or
LayerNormalization, which onnxruntime fuses on its own when it loads the model (such a
candidate would be the same model, verified and timed again). Everything else is
`PassOutcome(applied=False, reason=...)`.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from onnxport.child_tool import run_tool
from onnxport.errors import BadInput
from onnxport.records import PassContext, PassOutcome

from .detect import detect_heads, detect_model_type, evidence, index
from .options import FuseOptions, parse_options

# onnxruntime graph optimisation before the Python fusions: 0 = none. See __init__.py.
OPT_LEVEL = 0
_FUSED_DEFAULT_DOMAIN = ("LayerNormalization", "Gelu", "RMSNormalization")
_ATTENTION_OPS = ("Attention", "MultiHeadAttention", "GroupQueryAttention",
                  "PackedAttention", "PackedMultiHeadAttention")
_MICROSOFT = "com.microsoft"
# Fusions the session optimizer (ORT_ENABLE_ALL) makes on its own when it loads a model:
# a candidate with only these is the model it came from, timed again.
_SESSION_FUSES = ("Gelu", "BiasGelu", "FastGelu", "LayerNormalization")


def fuse(context: PassContext) -> PassOutcome:
    options = parse_options(context.options, context.target.name)
    if options.mode == "off":
        return PassOutcome(applied=False, reason="fuse.mode is off")
    source = Path(context.input_path)
    original = _load(source)
    graph = index(original)
    found = evidence(graph)
    before = histogram(original)
    settings: dict[str, Any] = {
        "onnxruntime": _ort_version(),
        "opt_level": OPT_LEVEL,
        "nodes_before": len(original.graph.node),
        "attention_blocks": found.attention,
        "layer_norms": found.layer_norms,
    }
    if not found.transformer:
        return PassOutcome(applied=False, settings=settings, reason=(
            f"not a transformer: {source.name} has no attention block (a Softmax between "
            "two MatMuls) and no layer normalization (the model has "
            f"{_top_ops(before)})"))
    settings["norms"] = options.norms
    if not found.attention and options.norms == "keep":
        return PassOutcome(applied=False, settings=settings, reason=(
            f"no attention block in {source.name}, and its {found.layer_norms} layer "
            "norm(s) are left to the session (fuse.norms is keep): nothing to fuse that "
            "onnxruntime does not fuse on its own"))
    _choose(options, graph, settings)
    work = Path(tempfile.mkdtemp(prefix="fuse-", dir=_work_dir(context))).resolve()
    try:
        return _fuse(context, options, original, before, settings, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _choose(options: FuseOptions, graph, settings: dict[str, Any]) -> None:
    """Model type, heads and hidden size: the target's options, else the graph's."""
    if options.model_type:
        settings["model_type"], settings["model_type_from"] = options.model_type, "option"
    else:
        settings["model_type"], why = detect_model_type(graph)
        settings["model_type_from"] = "detected: " + why
    heads, hidden = options.num_heads, options.hidden_size
    if heads and hidden:
        how = "options"
    else:
        found_heads, found_hidden, how = detect_heads(graph)
        if heads or hidden:  # one given: the other follows from it and the graph
            given = "num_heads" if heads else "hidden_size"
            if found_heads and heads:
                hidden = heads * (found_hidden // found_heads)
            elif found_heads and hidden:
                heads = hidden // (found_hidden // found_heads)
            how = f"{given} from the options, the other detected: {how}"
        else:
            heads, hidden = found_heads, found_hidden
            how = "detected: " + how
    settings.update(num_heads=heads, hidden_size=hidden, heads_from=how)


def _fuse(context: PassContext, options: FuseOptions, original, before: Counter,
          settings: dict[str, Any], work: Path) -> PassOutcome:
    import onnx

    output = Path(context.output_path)
    external = has_external_data(original)
    fused_path = work / output.name  # the final name: an external .data keeps its link
    started = time.perf_counter()
    failure = _run_child(Path(context.input_path), fused_path, settings, external, work,
                         options.timeout, context.target.name)
    settings["seconds"] = round(time.perf_counter() - started, 2)
    if failure:
        return PassOutcome(applied=False, reason=failure, settings=settings,
                           warnings=[f"fuse: {failure}"])
    result = onnx.load(str(fused_path), load_external_data=False)
    after = histogram(result)
    settings["nodes_after"] = len(result.graph.node)
    problem = check_interface(original, result)
    if problem:
        reason = f"onnxruntime's optimizer changed the model's interface: {problem}"
        return PassOutcome(applied=False, reason=reason, settings=settings,
                           warnings=[f"fuse: {reason}"])
    fused = fused_ops(before, after)
    settings["fused"] = fused
    if not fused:
        return PassOutcome(applied=False, settings=settings, reason=(
            f"onnxruntime's optimizer fused nothing (model type {settings['model_type']}, "
            f"{settings['num_heads']} heads, hidden size {settings['hidden_size']}): "
            "the previous model goes on"))
    if all(op in _SESSION_FUSES for op in fused):
        hint = _warnings(settings, fused)
        return PassOutcome(applied=False, settings=settings, reason=(
            f"onnxruntime's optimizer fused only {', '.join(sorted(fused))}, which the "
            "session fuses on its own when it loads the model: the previous model goes "
            "on") + (f" ({hint[0].removeprefix('fuse: ')})" if hint else ""))
    restore_interface(original, result)
    onnx.save(result, str(fused_path))  # weights in a .data file stay as written
    _move(fused_path, output)
    return PassOutcome(applied=True, path=output, settings=settings,
                       warnings=_warnings(settings, fused))


def _warnings(settings: dict[str, Any], fused: dict[str, int]) -> list[str]:
    if not settings["attention_blocks"] or any(op in fused for op in _ATTENTION_OPS):
        return []
    return [f"fuse: the graph has {settings['attention_blocks']} attention block(s) but "
            f"onnxruntime {settings['onnxruntime']}'s optimizer fused no Attention (only "
            f"{', '.join(sorted(fused))}): its patterns do not match this export; for "
            "Hugging Face encoders, exporting with attn_implementation='eager' fuses "
            "where the default 'sdpa' does not"]


# --------------------------------------------------------------------------- the child


def _run_child(source: Path, output: Path, settings: dict[str, Any], external: bool,
               work: Path, timeout: float, target: str) -> str:
    """Run the optimizer; '' when it wrote a model, else why not."""
    request = {
        "input": str(source.resolve()),
        "output": str(output.resolve()),
        "model_type": settings["model_type"],
        "num_heads": settings["num_heads"],
        "hidden_size": settings["hidden_size"],
        "opt_level": OPT_LEVEL,
        "norms": settings["norms"],
        "external_data": external,
    }
    package_parent = str(Path(__file__).resolve().parent.parent)
    path = os.pathsep.join(p for p in (package_parent, os.environ.get("PYTHONPATH")) if p)
    run = run_tool("onnxport_fusion.child", request, work, tool="onnxruntime's optimizer",
                   timeout=timeout, timeout_hint="raise fuse.timeout for large models",
                   env={"PYTHONPATH": path, "TMPDIR": str(work), "TEMP": str(work),
                        "TMP": str(work)})
    answer = run.answer
    if answer is None:
        return run.failure
    if "unknown_model_type" in answer:
        raise BadInput(f"target '{target}': fuse.model_type "
                       f"{answer['unknown_model_type']!r} is not one onnxruntime's "
                       "optimizer knows", "known: " + ", ".join(answer["known"]))
    if answer.get("messages"):
        settings["optimizer_messages"] = answer["messages"]
    if not output.is_file() or output.stat().st_size == 0:
        return "the optimizer reported success but wrote no model"
    return ""


# --------------------------------------------------------------------------- checks


def histogram(model) -> Counter:
    """Nodes of the top-level graph by (domain, op type); '' is the ONNX domain."""
    return Counter((n.domain if n.domain != "ai.onnx" else "", n.op_type)
                   for n in model.graph.node)


def fused_ops(before: Counter, after: Counter) -> dict[str, int]:
    """Fused op types whose count grew, with how many were added."""
    grown = {}
    for (domain, op), count in sorted(after.items()):
        fused = domain == _MICROSOFT or (domain == "" and op in _FUSED_DEFAULT_DOMAIN)
        if fused and count > before.get((domain, op), 0):
            grown[op] = grown.get(op, 0) + count - before.get((domain, op), 0)
    return grown


def _interface(model, kind: str) -> list[Any]:
    initializers = {t.name for t in model.graph.initializer}
    values = model.graph.input if kind == "input" else model.graph.output
    return [v for v in values if v.name not in initializers]


def check_interface(original, result) -> str:
    """What about the inputs and outputs changed in a way the user would notice, or ''."""
    for kind in ("input", "output"):
        before, after = _interface(original, kind), _interface(result, kind)
        names_before, names_after = [v.name for v in before], [v.name for v in after]
        if names_before != names_after:
            return f"its {kind}s are {names_after}, the model's were {names_before}"
        for old, new in zip(before, after):
            problem = _compare_type(kind, old, new)
            if problem:
                return problem
    return ""


def _compare_type(kind: str, old, new) -> str:
    old_t, new_t = old.type.tensor_type, new.type.tensor_type
    if old.type.WhichOneof("value") != new.type.WhichOneof("value"):
        return f"{kind} {old.name} is no longer the same kind of value"
    if old_t.elem_type != new_t.elem_type:
        return (f"{kind} {old.name} changed element type ({old_t.elem_type} -> "
                f"{new_t.elem_type})")
    if not old_t.HasField("shape") or not new_t.HasField("shape"):
        return ""
    old_dims, new_dims = list(old_t.shape.dim), list(new_t.shape.dim)
    if len(old_dims) != len(new_dims):
        return f"{kind} {old.name} changed rank ({len(old_dims)} -> {len(new_dims)})"
    for axis, (a, b) in enumerate(zip(old_dims, new_dims)):
        symbolic = not a.HasField("dim_value")
        if symbolic and b.HasField("dim_value"):
            return (f"dimension {axis} of {kind} {old.name} "
                    f"({a.dim_param or 'dynamic'}) became fixed ({b.dim_value})")
        if not symbolic and b.HasField("dim_value") and a.dim_value != b.dim_value:
            return (f"dimension {axis} of {kind} {old.name} changed ({a.dim_value} -> "
                    f"{b.dim_value})")
    return ""


def restore_interface(original, result) -> None:
    """Copy the original input and output types back (the dimension names as exported)."""
    for kind in ("input", "output"):
        for old, new in zip(_interface(original, kind), _interface(result, kind)):
            new.type.CopyFrom(old.type)


def has_external_data(model) -> bool:
    return any(t.data_location == 1 for t in model.graph.initializer)  # EXTERNAL


# --------------------------------------------------------------------------- files


def _load(source: Path):
    import onnx

    try:
        return onnx.load(str(source), load_external_data=False)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise BadInput(f"fuse: cannot read {source.name} as an ONNX model ({first})",
                       "the pass receives the previous stage's model: check that file")


def _work_dir(context: PassContext) -> Path:
    work = Path(context.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    return work


def _move(fused: Path, output: Path) -> None:
    """The model, and its .data file if it has one, to the pass's output path."""
    output.parent.mkdir(parents=True, exist_ok=True)
    data = fused.with_name(fused.name + ".data")
    if data.is_file():
        shutil.move(str(data), str(output.with_name(output.name + ".data")))
    shutil.move(str(fused), str(output))


def _top_ops(counts: Counter) -> str:
    ops: Counter[str] = Counter()
    for (_, op), n in counts.items():
        ops[op] += n
    return ", ".join(f"{op} x{n}" for op, n in ops.most_common(8)) or "no nodes"


def _ort_version() -> str:
    for name in ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml",
                 "onnxruntime-openvino"):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown"
