"""The `fp16` pass on one file: read, convert, write, type-check, and say what was done.

Besides the conversion itself this module is honest about where the float16 model will
be verified. Where this onnxruntime has neither CUDA nor TensorRT (a CPU-only machine,
where the GPU target falls back to the CPU provider), the CPU provider runs float16
models by computing every op it has no float16 kernel for in float32, between Casts it
inserts itself, and it drops the Casts between two such ops. So the verification there
measures float16 weights and float16 at a few places, not a GPU's float16 arithmetic.
The pass then asks onnxruntime which nodes it really runs in float16, and emulates
float16 arithmetic on random inputs (emulating.py): a model that overflows float16 or
misses the float16 budget there is not applied (the float32 model goes on, with the
reason), or fails the run with `fp16.required`. Both answers go into the stage's
settings and warnings.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from onnxport.errors import BadInput, VerificationFailed
from onnxport.records import PassContext, PassOutcome

from . import GPU_PROVIDERS
from .options import Fp16Options, parse_options

PROBE_LIMIT = 512 * 1024**2  # bytes: larger models are not probed nor emulated
_INSERTED = "InsertedPrecisionFreeCast_"  # how onnxruntime names the Casts it inserts


def run(context: PassContext) -> PassOutcome:
    options = parse_options(context.options, context.target.name)
    import onnx

    from .converting import convert, type_check, value_types

    source, output = Path(context.input_path), Path(context.output_path)
    work = Path(context.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    model = _load(onnx, source)
    external = any(init.data_location == onnx.TensorProto.EXTERNAL
                   for init in model.graph.initializer)
    notes: list[str] = []
    try:  # on the weight-less proto: any size works
        types = value_types(onnx.shape_inference.infer_shapes(model, strict_mode=False))
    except Exception as exc:
        types = value_types(model)
        notes.append(f"shape inference failed ({_first_line(exc)}): only the types the "
                     "model declares were used")
    if external:
        onnx.load_external_data_for_model(model, str(source.parent))
    size_before = _size(source)
    blocked = options.blocked_ops()
    done = convert(model, types, blocked, options.block_nodes)
    settings: dict[str, Any] = {
        "keep_io_types": True,
        "ops_converted": dict(sorted(done.converted.items())),
        "ops_kept_fp32": {op: {"nodes": n, "why": why}
                          for op, (n, why) in sorted(done.kept.items())},
        "casts_inserted": done.casts,
        "weights_converted": done.initializers,
        "values_clipped": done.clipped,
        "values_flushed_to_zero": done.flushed,
        "block_ops": sorted(blocked),
        "block_nodes": list(options.block_nodes),
        "size_before": size_before,
    }
    if not done.converted:
        kept = ", ".join(f"{op} x{n}" for op, (n, _) in sorted(done.kept.items()))
        return PassOutcome(applied=False, settings=settings, reason=(
            "nothing to convert: no float32 op outside the ones kept in float32"
            + (f" ({kept})" if kept else "")))
    _save(onnx, model, output, external)
    settings["type_checked"] = type_check(model, output, work / "fp16-typecheck.onnx")
    settings["size_after"] = _size(output)
    settings["size_ratio"] = round(settings["size_after"] / max(size_before, 1), 3)
    warnings = list(notes)
    if done.clipped:
        warnings.append(f"{done.clipped} weight value(s) beyond float16's range were "
                        "clipped to +-65504")
    if done.untyped:
        warnings.append(f"{done.untyped} node output(s) have no inferred type and got no "
                        "Cast: if one is float32 the model may not load")
    if not _gpu_here(context.target):
        if external:  # saving moved the weights out of `model`
            model = onnx.load(str(output))
        cpu_notes, problem = _check_on_cpu(source, output, model, work, settings, options)
        warnings += cpu_notes
        if problem:
            return _refuse(context, options, settings, warnings, problem)
    return PassOutcome(applied=True, path=output, settings=settings, warnings=warnings,
                       tolerance=options.tolerance, optional=not options.required)


def _refuse(context: PassContext, options: Fp16Options, settings: dict[str, Any],
            warnings: list[str], problem: str) -> PassOutcome:
    """The emulation failed: the float32 model goes on, or with fp16.required the run
    fails, as it would if the verification on a GPU had failed."""
    reason = ("float16 arithmetic, emulated on this CPU, misses the float16 budget: "
              + problem)
    if options.required:
        raise VerificationFailed(
            f"pass fp16 for target {context.target.name}: {reason}",
            "keep the ops that overflow or lose precision in float32 (fp16.block_ops, "
            "fp16.block_nodes), loosen the budget (fp16.atol, fp16.rtol), or set "
            "fp16.required = false to ship float32")
    return PassOutcome(applied=False, reason=reason + "; kept float32",
                       settings=settings, warnings=[*warnings, f"not applied: {reason}"])


def _load(onnx, path: Path):
    """The model without its external weights; a missing or corrupt file is BadInput
    (a protobuf DecodeError says nothing the user can act on)."""
    if not path.is_file():
        raise BadInput(f"fp16: {path} does not exist or is not a file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise BadInput(f"fp16: {path} is not a readable ONNX model "
                       f"({type(exc).__name__})",
                       "check that the file is complete and really is .onnx") from exc
    if model.ir_version == 0 or not model.graph.output:
        raise BadInput(f"fp16: {path} is not an ONNX model (no IR version or no graph "
                       "outputs)", "check that the file really is .onnx")
    return model


def _save(onnx, model, output: Path, external: bool) -> None:
    """Weights stay where they were: in the file, or in a .data file beside it."""
    output.parent.mkdir(parents=True, exist_ok=True)
    if external:
        onnx.save(model, str(output), save_as_external_data=True,
                  all_tensors_to_one_file=True, location=output.name + ".data",
                  size_threshold=1024)
    else:
        onnx.save(model, str(output))


def _size(model_path: Path) -> int:
    """The .onnx file plus the external data files it names."""
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    files = {entry.value for init in model.graph.initializer
             for entry in init.external_data if entry.key == "location"}
    return model_path.stat().st_size + sum(
        (model_path.parent / f).stat().st_size for f in files
        if (model_path.parent / f).is_file())


def _gpu_here(target) -> bool:
    """Whether this onnxruntime has a GPU provider the target asks for; else the
    verification runs on the CPU. (Not proven by opening a session: TensorRT would
    build its engine. A GPU build on a machine without a GPU says yes and runs on CPU.)"""
    try:
        import onnxruntime as ort
    except ImportError:
        return False
    available = set(ort.get_available_providers())
    return any(p in available for p in target.providers if p in GPU_PROVIDERS)


def _check_on_cpu(source: Path, output: Path, model, work: Path,
                  settings: dict[str, Any], options: Fp16Options) -> tuple[list[str], str]:
    """Without a GPU the verification cannot see float16 arithmetic: say what the CPU
    provider really runs in float16, and emulate float16 arithmetic on random inputs.
    Returns the warnings and, when the emulation misses the budget, the problem."""
    from .emulating import emulate

    head = ("no GPU provider the target asks for is available here, so the float16 model "
            "is verified on the CPU provider")
    if settings["size_after"] > PROBE_LIMIT:
        return [head + ", which computes most float16 ops in float32; float16 arithmetic "
                "was not emulated (model over 512 MB): check the artifact on the GPU "
                "machine with `onnxport verify`"], ""
    notes: list[str] = []
    try:
        native, widened = cpu_float16_nodes(output, work)
        settings["cpu_provider"] = {"ran_in_float16": dict(sorted(native.items())),
                                    "ran_in_float32": dict(sorted(widened.items()))}
        total = sum(native.values()) + sum(widened.values())
        listed = ", ".join(f"{op} x{n}" for op, n in widened.most_common())
        head += (f", which runs {sum(native.values())} of its {total} float16 nodes in "
                 f"float16 and the others ({listed}) in float32 between Casts it inserts, "
                 "so it measures float16 weights, not float16 arithmetic"
                 if widened else ", which runs all its float16 nodes in float16")
    except Exception as exc:
        head += f" (which nodes it runs in float16 is unknown: {_first_line(exc)})"
    try:
        emulation = emulate(source, model, work, options.tolerance)
    except Exception as exc:
        notes.append(f"{head}. Float16 arithmetic could not be emulated here "
                     f"({_first_line(exc)}): check the artifact on the GPU machine with "
                     "`onnxport verify`")
        settings["emulated_fp16"] = {"passed": None, "problem": _first_line(exc)}
        return notes, ""
    settings["emulated_fp16"] = emulation.to_dict()
    if not emulation.passed:
        return [head + "."], emulation.problem
    worst = max((o["max_abs"] for o in emulation.outputs.values()), default=0.0)
    notes.append(f"{head}. Emulated float16 arithmetic (every float16 value rounded, as "
                 f"on a GPU) on random inputs: max abs error {worst:.2g} against float32, "
                 "within the float16 budget; the verification on the GPU machine "
                 "(`onnxport verify`) is the real one")
    return notes, ""


def cpu_float16_nodes(path: Path, work: Path) -> tuple[Counter, Counter]:
    """Per op type, how many of the model's float16 nodes onnxruntime's CPU provider
    runs in float16, and how many in float32: a Cast it inserted feeds or reads them
    (no float16 kernel, or a neighbour without one), or it expanded the op into simpler
    ones because no kernel took it (a function op such as Softmax)."""
    import onnx
    import onnxruntime as ort

    from .converting import FLOAT16, value_types

    model = onnx.load(str(path), load_external_data=False)
    types = value_types(onnx.shape_inference.infer_shapes(model, strict_mode=False))
    for k, node in enumerate(model.graph.node):
        node.name = node.name or f"fp16_probe_{k}"
    fp16_nodes = {n.name: n.op_type for n in model.graph.node
                  if n.op_type != "Cast" and any(types.get(v) == FLOAT16
                                                 for v in [*n.input, *n.output])}
    # beside the model, so that external data files (if any) are found where it says
    probe = path.with_name(path.stem + ".fp16-probe.onnx")
    optimized = work / "fp16-probe.optimized.onnx"
    onnx.save(model, str(probe))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.optimized_model_filepath = str(optimized)
    try:
        ort.InferenceSession(str(probe), options, providers=["CPUExecutionProvider"])
        ran = {n.name: n for n in
               onnx.load(str(optimized), load_external_data=False).graph.node}
    finally:
        probe.unlink(missing_ok=True)
        optimized.unlink(missing_ok=True)
    native, widened = Counter(), Counter()
    for name, op_type in fp16_nodes.items():
        node = ran.get(name)
        values = [] if node is None else [*node.input, *node.output]
        if node is None or any(v.startswith(_INSERTED) for v in values):
            widened[op_type] += 1
        else:
            native[op_type] += 1
    return native, widened


def _first_line(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [""])[0][:200]
    return f"{type(exc).__name__}: {text}".rstrip(": ")
