"""INT8 dynamic quantization of one model: pre-process, plan, quantize, count.

The plan is made on the model quantize_dynamic will see, before it runs, so that a model
with nothing to quantize is refused (mode on) or skipped (mode auto) instead of being
shipped as an identical "INT8" model. After quantization the integer nodes are counted
back per original op type; those counts go into the stage's settings.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from onnxport.flow.environment import u8s8_saturates_here
from onnxport.errors import BadInput
from onnxport.artifact.modelinfo import describe_model
from onnxport.pass_modes import run_in_mode
from onnxport.records import PassContext, PassOutcome

from .options import NOT_DYNAMIC, ORT_EXTRA_OPTIONS, QuantizeOptions, parse_options

_FLOATS = (1, 10)  # FLOAT, FLOAT16: what quantize_dynamic accepts as weights
_INTEGER_NODES = ("MatMulInteger", "ConvInteger", "DynamicQuantizeLSTM", "QAttention",
                  "QEmbedLayerNormalization", "DynamicQuantizeMatMul")


@dataclass
class Plan:
    """What quantize_dynamic will be asked to do with one model."""

    candidates: dict[str, str]  # node name (as quantize_dynamic names it) -> op type
    ort_op_types: list[str]
    exclude: list[str]
    ignored: dict[str, str] = field(default_factory=dict)  # op type -> why not quantized


def quantize(context: PassContext) -> PassOutcome:
    options = parse_options(context.options, context.target.name)
    if options.mode == "off":
        return PassOutcome(applied=False, reason="quantize.mode is off")
    return run_in_mode(options.mode, lambda: _quantize(context, options),
                       failure=f"quantization failed for target {context.target.name}",
                       hint="run with --quantize auto to ship fp32 when INT8 cannot be "
                            "made, or --debug for the full error")


def _quantize(context: PassContext, options: QuantizeOptions) -> PassOutcome:
    import onnx

    source = Path(context.input_path)
    output = Path(context.output_path)
    work = Path(context.work_dir)
    external = bool(describe_model(source).external_data)
    settings: dict[str, Any] = {
        "mode": options.mode,
        "method": options.method,
        "weight_type": options.weight_type,
        "activation_type": "QUInt8",  # dynamic quantization: always uint8 activations
        "per_channel": options.per_channel,
        "reduce_range": options.reduce_range,
        "op_types": list(options.op_types),
        "onnxruntime": _ort_version(),
    }
    with _quiet():
        prepared, note = _pre_process(source, work / "prepared.onnx", options, external)
    settings["pre_process"] = note
    prepared = _with_node_names(prepared, work / "named.onnx", external)
    model = onnx.load(str(prepared), load_external_data=False)
    plan = make_plan(model, options)
    if plan.ignored:
        settings["not_quantized"] = dict(plan.ignored)
    if not plan.candidates:
        return _nothing_to_quantize(source, model, options, settings)
    warnings = list(plan.ignored.values())
    if options.method == "static":
        from .static import quantize_static_qdq, static_op_types

        settings.update(method="static", format="QDQ",
                        op_types=static_op_types(options))
        with _quiet():
            extra, notes = quantize_static_qdq(prepared, output, options,
                                               context.calibration_data, external,
                                               plan.exclude)
        settings.update(extra)
        warnings += notes
        quantized = count_qdq(onnx.load(str(output), load_external_data=False))
    else:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        with _quiet():
            quantize_dynamic(
                str(prepared), str(output), op_types_to_quantize=plan.ort_op_types,
                per_channel=options.per_channel, reduce_range=options.reduce_range,
                weight_type=QuantType[options.weight_type], nodes_to_exclude=plan.exclude,
                use_external_data_format=external,
                extra_options=dict(ORT_EXTRA_OPTIONS))
        quantized = count_quantized(onnx.load(str(output), load_external_data=False),
                                    plan)
    if not quantized:
        return _nothing_to_quantize(source, model, options, settings)
    before = describe_model(source).size_bytes
    after = describe_model(output).size_bytes
    settings.update({
        "quantized_nodes": quantized,
        "size_bytes": {"before": before, "after": after},
        "size_ratio": round(after / before, 3),
    })
    if options.weight_type == "QInt8" and not options.reduce_range and u8s8_saturates_here():
        warnings.append(
            "this machine is x86-64 without VNNI, where onnxruntime's uint8 x int8 "
            "kernels can saturate: the INT8 error measured here may be larger than on "
            f"{context.target.name}'s own CPU (verify there, or set "
            "quantize.reduce_range = true for 7-bit weights that are accurate on both)")
    return PassOutcome(applied=True, path=output, settings=settings,
                       tolerance=context.target.quantized_tolerance,
                       optional=options.mode == "auto", warnings=warnings)


def make_plan(model, options: QuantizeOptions) -> Plan:
    """The nodes whose weights will become integers, by the name quantize_dynamic gives
    them, and the op types and exclusions that make it quantize exactly those.

    quantize_dynamic rewrites every Gemm with alpha = beta = 1 and transA = 0 into a
    MatMul named '<gemm>_MatMul' (+ Add) before quantizing, whatever the op types; so
    Gemm is quantized through MatMul, and excluded by that name when not asked for.
    """
    wanted = set(options.op_types)
    ignored = {op: NOT_DYNAMIC[op] for op in options.op_types if op in NOT_DYNAMIC}
    weights = {i.name: i for i in model.graph.initializer}

    def weight(name: str, rank: int | None = None) -> bool:
        init = weights.get(name)
        return (init is not None and init.data_type in _FLOATS
                and (rank is None or len(init.dims) == rank))

    candidates: dict[str, str] = {}
    exclude: list[str] = []
    for node in model.graph.node:
        op = node.op_type
        if op == "MatMul":
            if "MatMul" not in wanted:
                exclude.append(node.name)
            elif len(node.input) > 1 and weight(node.input[1]):
                candidates[node.name] = "MatMul"
        elif op == "Gemm":
            rewritten = node.name + "_MatMul"
            if not _gemm_as_matmul(node):
                continue
            if "Gemm" not in wanted:
                exclude.append(rewritten)
            elif weight(node.input[1], 2):
                candidates[rewritten] = "Gemm"
        elif op == "LSTM" and "LSTM" in wanted:
            if weight(node.input[1], 3) and weight(node.input[2], 3):
                candidates[node.name] = "LSTM"
        elif op == "Attention" and node.domain == "com.microsoft" and op in wanted:
            if weight(node.input[1]):
                candidates[node.name] = "Attention"
        elif op == "Gather" and op in wanted:
            if weight(node.input[0]):
                candidates[node.name] = "Gather"
        elif op == "Conv" and op in wanted:
            if len(node.input) > 1 and weight(node.input[1]):
                candidates[node.name] = "Conv"
        elif op == "EmbedLayerNormalization" and op in wanted:
            if len(node.input) > 2 and weight(node.input[2]):
                candidates[node.name] = "EmbedLayerNormalization"
    ort_types = {"MatMul" if op == "Gemm" else op for op in wanted if op not in NOT_DYNAMIC}
    return Plan(candidates, sorted(ort_types), exclude, ignored)


def count_quantized(model, plan: Plan) -> dict[str, int]:
    """Integer nodes in the quantized model, by the op type they replaced."""
    counts: Counter[str] = Counter()
    weights = {i.name: i.data_type for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type in _INTEGER_NODES and node.name.endswith("_quant"):
            original = plan.candidates.get(node.name[:-len("_quant")])
            if original:
                counts[original] += 1
        elif (node.op_type == "Gather" and plan.candidates.get(node.name) == "Gather"
              and weights.get(node.input[0]) in (2, 3)):  # UINT8, INT8
            counts["Gather"] += 1
    return dict(counts)


def count_qdq(model) -> dict[str, int]:
    """Quantized ops of a QDQ model: those whose weight input is dequantized."""
    dequantized = {o for n in model.graph.node if n.op_type == "DequantizeLinear"
                   for o in n.output}
    counts: Counter[str] = Counter()
    for node in model.graph.node:
        if node.op_type in ("Conv", "MatMul", "Gemm") and len(node.input) > 1 and \
                node.input[1] in dequantized:
            counts[node.op_type] += 1
    return dict(counts)


def _gemm_as_matmul(node) -> bool:
    attrs = {a.name: a for a in node.attribute}
    alpha = attrs["alpha"].f if "alpha" in attrs else 1.0
    beta = attrs["beta"].f if "beta" in attrs else 1.0
    trans_a = attrs["transA"].i if "transA" in attrs else 0
    return alpha == 1.0 and beta == 1.0 and trans_a == 0 and len(node.input) > 1


def _nothing_to_quantize(source: Path, model, options: QuantizeOptions,
                         settings: dict[str, Any]) -> PassOutcome:
    looked_for = [op for op in options.op_types if op not in NOT_DYNAMIC]
    ops = Counter(n.op_type for n in model.graph.node)
    has = ", ".join(f"{op} x{n}" for op, n in ops.most_common(8)) or "no nodes"
    message = (f"nothing to quantize in {source.name}: no {_or(looked_for)} node with "
               f"constant float weights (op types looked for: {', '.join(looked_for)}; "
               f"the model has {has})")
    if options.mode == "on":
        hint = ("quantize it with --quantize off or auto, or add the op type to "
                "quantize.op_types")
        if "Conv" in ops and "Conv" not in options.op_types:
            hint = ("Conv is left out unless quantize.op_types lists it (ConvInteger is "
                    "usually slower than fp32 Conv); " + hint)
        raise BadInput(message, hint)
    return PassOutcome(applied=False, reason=message, settings=settings)


def _or(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def _pre_process(source: Path, prepared: Path, options: QuantizeOptions,
                 external: bool) -> tuple[Path, str]:
    """quant_pre_process into `prepared`; on failure the source itself, and why."""
    if not options.pre_process:
        return source, "skipped (quantize.pre_process = false)"
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        # its symbolic shape inference can leave sym_shape_infer_temp.onnx in the
        # current directory (tree ensembles): run it where the pass's files go
        with contextlib.chdir(prepared.parent):
            quant_pre_process(str(source.resolve()), str(prepared.resolve()),
                              save_as_external_data=external, all_tensors_to_one_file=True,
                              external_data_location=prepared.name + ".data")
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        return source, (f"failed ({type(exc).__name__}: {first}); quantized the model "
                        "without it")
    if not prepared.is_file():
        return source, "wrote no model; quantized the model without it"
    return prepared, "ok"


def _with_node_names(path: Path, renamed: Path, external: bool) -> Path:
    """quantize_dynamic refers to nodes by name: give unnamed ones a unique name."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    if all(node.name for node in model.graph.node):
        return path
    model = onnx.load(str(path))
    taken = {node.name for node in model.graph.node}
    for index, node in enumerate(model.graph.node):
        if not node.name:
            name = f"{node.op_type}_{index}"
            while name in taken:
                name += "_"
            node.name = name
            taken.add(name)
    onnx.save(model, str(renamed), save_as_external_data=external,
              all_tensors_to_one_file=True, location=renamed.name + ".data")
    return renamed


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """onnxruntime.quantization logs advice and progress at INFO/WARNING on the root
    logger; the pass reports what matters in its settings instead."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__
