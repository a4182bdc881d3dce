"""Run onnxsim on one model in a child process and decide whether its result can be used.

The result is used only when the child finished in time, onnxsim said `ok`, the file
exists, and the graph kept its interface: the same input and output names in the same
order, the same element types and ranks, and every dimension that was symbolic (the
batch) still symbolic. Dimension names onnxsim renamed are put back. Everything else
becomes `PassOutcome(applied=False, reason=...)`: the previous model goes on. The shapes
onnxsim inferred for intermediate values are not kept (keep_input_annotations).
"""

from __future__ import annotations

import importlib.metadata
import time
from pathlib import Path
from typing import Any

from onnxport.artifact.modelinfo import load_onnx
from onnxport.child_tool import run_tool
from onnxport.records import PassContext, PassOutcome

from .options import SimplifyOptions, parse_options


def simplify(context: PassContext) -> PassOutcome:
    options = parse_options(context.options, context.target.name)
    import onnx

    source = Path(context.input_path)
    output = Path(context.output_path)
    original = load_onnx(source)
    external = _has_external_data(original)
    settings: dict[str, Any] = {
        "onnxsim": _version("onnxsim"),
        "nodes_before": len(original.graph.node),
        "check_n": options.check_n,
        "skip_fuse_bn": options.skip_fuse_bn,
        "skipped_optimizers": list(options.skipped_optimizers),
        "timeout_s": options.timeout,
    }
    started = time.perf_counter()
    failure = _run_child(source, output, options, external, Path(context.work_dir))
    settings["seconds"] = round(time.perf_counter() - started, 2)
    if failure:
        return PassOutcome(applied=False, reason=failure, settings=settings,
                           warnings=[f"simplify: {failure}"])
    # Inline weights load in full; external ones stay in their .data file untouched.
    result = onnx.load(str(output), load_external_data=False)
    settings["nodes_after"] = len(result.graph.node)
    problem = restore_interface(original, result)
    if problem:
        reason = f"onnxsim changed the model's interface: {problem}"
        return PassOutcome(applied=False, reason=reason, settings=settings,
                           warnings=[f"simplify: {reason}"])
    if same_graph(original, result):
        return PassOutcome(applied=False, settings=settings, reason=(
            f"onnxsim found nothing to simplify ({len(result.graph.node)} nodes, "
            "unchanged): the previous model goes on"))
    settings["inferred_shapes_dropped"] = keep_input_annotations(original, result)
    _save_like_input(onnx, result, output, external)
    return PassOutcome(applied=True, path=output, settings=settings)


def keep_input_annotations(original, result) -> int:
    """Drop the shapes onnxsim inferred for intermediate values (`value_info`), keeping
    those the input model had for values that are still there; return how many were
    dropped. onnxruntime infers shapes itself when it loads a model, and the extra
    annotations change which fusions its session optimizer dares: on a tiny BERT whose
    attention the fuse pass had fused, they let the session fuse SkipLayerNormalization,
    the kernel the fuse pass leaves out because it measured slower
    (benchmarks/fusion_norms.py, docs/targets.md)."""
    had = {v.name for v in original.graph.value_info}
    kept = [v for v in result.graph.value_info if v.name in had]
    dropped = len(result.graph.value_info) - len(kept)
    del result.graph.value_info[:]
    result.graph.value_info.extend(kept)
    return dropped


def _save_like_input(onnx, model, output: Path, external: bool) -> None:
    """Write the result with the input's layout: weights in a .data file beside it only
    if the input had one (onnxsim decides that by size, not by the input)."""
    if _has_external_data(model) == external:
        onnx.save(model, str(output))  # interface types only; .data stays as written
        return
    if not external:
        onnx.load_external_data_for_model(model, str(output.parent))
        if model.ByteSize() < 2 * 1024**3 - 1024**2:  # else it must stay external
            onnx.save(model, str(output))
            return
    onnx.save(model, str(output), save_as_external_data=True, all_tensors_to_one_file=True,
              location=output.name + ".data", size_threshold=1024)


def _run_child(source: Path, output: Path, options: SimplifyOptions, external: bool,
               work_dir: Path) -> str:
    """Run the child; '' when it wrote a model onnxsim called ok, else why not."""
    request = {
        "input": str(source.resolve()),
        "output": str(output.resolve()),
        "check_n": options.check_n,
        "skip_fuse_bn": options.skip_fuse_bn,
        "skipped_optimizers": list(options.skipped_optimizers),
        "skip_constant_folding": options.skip_constant_folding,
        "skip_shape_inference": options.skip_shape_inference,
        "memory_limit_mb": options.memory_limit_mb,
        # Keep the input's layout: weights beside the model only if they were already
        # (onnxsim's own default moves anything over 100 MB into a .data file).
        "external_data_threshold": "0B" if external else "2GB",
    }
    run = run_tool("onnxport_onnxsim.child", request, work_dir, tool="onnxsim",
                   timeout=options.timeout,
                   timeout_hint="raise simplify.timeout for large models")
    if run.answer is None:
        return run.failure
    if not run.answer["ok"]:
        detail = next((l.strip() for l in run.stdout.splitlines()
                       if "changes after optimization" in l), "")
        return ("onnxsim could not check its result (ok=False)"
                + (f": {detail}" if detail else ""))
    if not output.is_file() or output.stat().st_size == 0:
        return "onnxsim reported success but wrote no model"
    return ""


def restore_interface(original, result) -> str:
    """Check that `result` has `original`'s interface and copy the original's input and
    output types back onto it (onnxsim may rename symbolic dimensions). Returns what
    changed in a way that cannot be put back, or ''."""
    for kind in ("input", "output"):
        before = _interface(original, kind)
        after = _interface(result, kind)
        names_before = [v.name for v in before]
        names_after = [v.name for v in after]
        if names_before != names_after:
            return f"its {kind}s are {names_after}, the model's were {names_before}"
        for old, new in zip(before, after):
            problem = _compare_type(kind, old, new)
            if problem:
                return problem
        for old, new in zip(before, after):
            new.type.CopyFrom(old.type)
    return ""


def same_graph(original, result) -> bool:
    """The same nodes wired the same way, the same weights by name and no fewer bytes:
    onnxsim only annotated the graph (shapes, value_info), which makes a file larger,
    not simpler. (Stripping the exporter's node metadata alone is a gain: it shrinks.)"""
    def wiring(model):
        return [(n.op_type, n.domain, tuple(n.input), tuple(n.output))
                for n in model.graph.node]

    def weights(model):
        return sorted(i.name for i in model.graph.initializer)

    return (wiring(original) == wiring(result) and weights(original) == weights(result)
            and result.ByteSize() >= original.ByteSize())


def _interface(model, kind: str) -> list:
    if kind == "output":
        return list(model.graph.output)
    initializers = {i.name for i in model.graph.initializer}
    return [v for v in model.graph.input if v.name not in initializers]


def _compare_type(kind: str, old, new) -> str:
    old_t, new_t = old.type.tensor_type, new.type.tensor_type
    if old_t.elem_type != new_t.elem_type:
        return f"{kind} '{old.name}' changed its element type"
    if not old_t.HasField("shape"):
        return ""
    if not new_t.HasField("shape") or len(new_t.shape.dim) != len(old_t.shape.dim):
        return f"{kind} '{old.name}' changed its rank"
    for axis, (a, b) in enumerate(zip(old_t.shape.dim, new_t.shape.dim)):
        old_fixed = a.HasField("dim_value")
        new_fixed = b.HasField("dim_value")
        if not old_fixed and new_fixed:
            label = a.dim_param or "?"
            return (f"it fixed axis {axis} of {kind} '{old.name}' at {b.dim_value} "
                    f"(it was the dynamic '{label}'); dynamic axes must stay dynamic")
        if old_fixed and new_fixed and a.dim_value != b.dim_value:
            return (f"axis {axis} of {kind} '{old.name}' is {b.dim_value}, "
                    f"it was {a.dim_value}")
    return ""


def _has_external_data(model) -> bool:
    return any(init.data_location == 1 for init in model.graph.initializer)  # EXTERNAL


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
