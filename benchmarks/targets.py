"""Benchmark the post-processing passes per reference model and deployment target.

For each reference model (examples/zoo) the fp32 model is exported once; then, for each
target (cpu, arm64, x86-avx2), the target's own `simplify` and `quantize` passes run on
it exactly as in a conversion (through the plugin host), with quantization forced on so
that every target has an INT8 model to compare (with that target's weight type,
reduce_range and per-channel settings). The three models (fp32, simplified, INT8) are
then measured side by side in one run:

- latency at batch 1: onnxruntime sessions with the target's providers and graph
  optimisation level and the same thread settings, timed in rotating blocks after a
  warm-up (fp32, simplified, INT8, then INT8, fp32, simplified, ...), median of the
  blocks' per-run means, so noise on a shared machine lands on all three alike;
- size: the .onnx file plus any external data;
- max abs error against PyTorch on the same random inputs (batch 4, seed 0, uniform
  in [-1, 1)), over every output.

The `ships` column is what the target would ship with its own mode: cpu has quantize
off (fp32); arm64 and x86-avx2 are auto, which keeps INT8 only when it meets the
target's INT8 budget (checked here on the error inputs) and is at least 5% faster (the
pass's rule, applied to this table's figures; a conversion measures again). On an x86
CPU without VNNI, arm64's 8-bit weights run the saturating U8S8 kernel, so its INT8
error here is larger than on an ARM board (docs/targets.md).

    python benchmarks/targets.py [--threads N] [--blocks N] [--models a,b]
                                 [--targets cpu,arm64] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.util
import math
import platform
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import numpy as np
import onnxruntime as ort
import torch

import onnxport
from onnxport.host import PluginHost, hookimpl
from onnxport.records import PassContext, Target

ROOT = Path(__file__).resolve().parent.parent
ZOO = ROOT / "examples" / "zoo"
MODELS = ["autopilot_torch", "planner", "wakeword", "localization"]
TARGETS = ["cpu", "arm64", "x86-avx2"]
VARIANTS = ("fp32", "simp", "int8")
BLOCK_SECONDS = 0.02  # a timed block lasts at least this long
SPEED_MARGIN = 0.05  # the quantize pass's default: INT8 must be 5% faster in mode auto
ERROR_BATCH = 4


@dataclass
class Row:
    model: str
    target: str
    ms: dict[str, float]
    size: dict[str, int]
    error: dict[str, float]
    ships: str
    notes: list[str] = field(default_factory=list)


class ExportOnly:
    """A target without passes: the verified fp32 export, nothing else."""

    @hookimpl
    def onnxport_register_targets(self, register):
        register(Target(name="bench-fp32", description="export only", passes=()))


# --- models ---------------------------------------------------------------------------

def load_zoo(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"zoo_{name}", ZOO / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def torch_reference(module: ModuleType) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Random inputs (batch 4, seed 0, uniform [-1, 1)) and PyTorch's outputs by name."""
    model, example, outputs = module.build(batch=1)
    rng = np.random.default_rng(0)
    feeds = {name: rng.uniform(-1, 1, (ERROR_BATCH, *tensor.shape[1:])).astype(np.float32)
             for name, tensor in example.items()}
    with torch.inference_mode():
        result = model(**{k: torch.from_numpy(v) for k, v in feeds.items()})
    result = result if isinstance(result, (tuple, list)) else (result,)
    return feeds, {name: t.numpy() for name, t in zip(outputs, result)}


def model_size(path: Path) -> int:
    from onnxport.artifact.modelinfo import describe_model

    return describe_model(path).size_bytes


# --- passes -----------------------------------------------------------------------------

def run_pass(host: PluginHost, name: str, target: Target, source: Path, work: Path,
             options: dict[str, Any]) -> tuple[Path | None, str, dict]:
    """Run a registered pass the way a conversion does; (model or None, reason, settings)."""
    record = host.get("pass", name)
    output = work / f"{name}-{target.name}" / source.name
    output.parent.mkdir(parents=True, exist_ok=True)
    outcome = record.run(PassContext(input_path=source, output_path=output, target=target,
                                     options=options, work_dir=output.parent))
    if not outcome.applied:
        return None, outcome.reason, outcome.settings
    return Path(outcome.path or output), "", outcome.settings


# --- measuring --------------------------------------------------------------------------

LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
          "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}


def session(path: Path, target: Target, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel,
                                               LEVELS[target.graph_optimization_level])
    available = set(ort.get_available_providers())
    providers = [(p, dict(target.provider_options.get(p, {})))
                 for p in target.providers if p in available]
    if not any(p == "CPUExecutionProvider" for p, _ in providers):
        providers.append(("CPUExecutionProvider", {}))
    return ort.InferenceSession(str(path), options, providers=providers)


def batch_one(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: value[:1] for name, value in feeds.items()}


def max_abs_error(sess: ort.InferenceSession, feeds: dict[str, np.ndarray],
                  expected: dict[str, np.ndarray]) -> float:
    names = [o.name for o in sess.get_outputs()]
    actual = dict(zip(names, sess.run(None, feeds)))
    return max(float(np.max(np.abs(actual[n].astype(np.float64) - expected[n])))
               for n in expected)


def meets_budget(sess: ort.InferenceSession, feeds: dict[str, np.ndarray],
                 expected: dict[str, np.ndarray], budget) -> bool:
    """Every output within the target's INT8 budget, by the verification's own rule."""
    from onnxport.tolerance import compare_output

    names = [o.name for o in sess.get_outputs()]
    actual = dict(zip(names, sess.run(None, feeds)))
    return all(compare_output(n, actual[n], expected[n], budget).passed for n in expected)


def rotating_medians(runs: list[Callable[[], Any]], blocks: int,
                     warmup: int = 5) -> list[float]:
    """Median ms per run of each callable, timed in blocks whose order rotates."""
    for _ in range(warmup):
        for run in runs:
            run()
    one = []
    for run in runs:
        started = time.perf_counter()
        run()
        one.append(time.perf_counter() - started)
    per_block = max(1, min(2000, math.ceil(BLOCK_SECONDS / max(max(one), 1e-6))))
    times: list[list[float]] = [[] for _ in runs]
    for index in range(blocks):
        order = list(range(len(runs)))
        order = order[index % len(runs):] + order[:index % len(runs)]
        if index % 2:
            order.reverse()
        for i in order:
            started = time.perf_counter()
            for _ in range(per_block):
                runs[i]()
            times[i].append((time.perf_counter() - started) * 1000 / per_block)
    return [statistics.median(t) for t in times]


# --- one model --------------------------------------------------------------------------

def bench_model(name: str, targets: list[str], host: PluginHost, work: Path,
                args: argparse.Namespace) -> list[Row]:
    module = load_zoo(name)
    result = onnxport.convert(f"{ZOO / name}.py:build", output=work / name,
                              targets=["bench-fp32"], latency_runs=0, host=host,
                              threads=args.threads)
    fp32 = result.model_path
    feeds, expected = torch_reference(module)
    rows = []
    for target_name in targets:
        target = host.get("target", target_name)
        notes = []
        simplified, why, _ = run_pass(host, "simplify", target, fp32, work / name,
                                      dict(target.options.get("simplify", {})))
        if simplified is None:
            notes.append(f"simplify skipped: {why}")
            simplified = fp32
        quantize = {**target.options.get("quantize", {}), "mode": "on"}
        int8, why, settings = run_pass(host, "quantize", target, simplified, work / name,
                                       quantize)
        if int8 is None:
            notes.append(f"quantize skipped: {why}")
        else:
            notes.append(f"INT8 {quantize.get('weight_type', 'QInt8')}"
                         f"{', reduce_range' if quantize.get('reduce_range') else ''}"
                         f"{', per_channel' if quantize.get('per_channel') else ''}: "
                         f"{settings.get('quantized_nodes')}")
        paths = {"fp32": fp32, "simp": simplified, "int8": int8}
        sessions = {k: session(p, target, args.threads) for k, p in paths.items() if p}
        one = batch_one(feeds)
        ran = list(sessions)
        medians = rotating_medians(
            [(lambda s=sessions[k]: s.run(None, one)) for k in ran], args.blocks)
        ms = dict(zip(ran, medians))
        mode = target.options.get("quantize", {}).get("mode", "off")
        if mode == "off" or "int8" not in ms:
            ships = "fp32"
        elif not meets_budget(sessions["int8"], feeds, expected,
                              target.quantized_tolerance):
            ships = "fp32 (budget)"
        else:
            faster = ms["int8"] <= ms["simp"] * (1 - SPEED_MARGIN)
            ships = "INT8" if faster else "fp32 (speed)"
        provider = sessions["fp32"].get_providers()[0].replace("ExecutionProvider", "")
        if provider != target.providers[0].replace("ExecutionProvider", ""):
            notes.append(f"asked {target.providers[0]}, ran {provider}")
        rows.append(Row(
            model=name, target=target_name, ms=ms,
            size={k: model_size(p) for k, p in paths.items() if p},
            error={k: max_abs_error(s, feeds, expected) for k, s in sessions.items()},
            ships=ships, notes=notes))
    return rows


# --- reporting --------------------------------------------------------------------------

def ms_text(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if value < 1 else f"{value:.2f}" if value < 100 else f"{value:.0f}"


def kb_text(value: int | None) -> str:
    return "-" if value is None else f"{value / 1000:.0f}"


def err_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.1e}"


GROUPS = [("latency ms", "ms", ms_text), ("size KB", "size", kb_text),
          ("max abs error", "error", err_text)]


def table_cells(rows: list[Row]) -> tuple[list[str], list[list[str]]]:
    heads = ["model", "target"]
    for _, _, _ in GROUPS:
        heads += list(VARIANTS)
    heads += ["int8/simp", "ships"]
    cells = []
    for r in rows:
        line = [r.model, r.target]
        for _, attr, fmt in GROUPS:
            values = getattr(r, attr)
            line += [fmt(values.get(v)) for v in VARIANTS]
        ratio = (f"{r.ms['int8'] / r.ms['simp']:.2f}x" if "int8" in r.ms else "-")
        line += [ratio, r.ships]
        cells.append(line)
    return heads, cells


def text_table(rows: list[Row]) -> str:
    heads, cells = table_cells(rows)
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(heads)]
    left = {0, 1, len(heads) - 1}

    def line(values: list[str]) -> str:
        return " ".join(v.ljust(w) if i in left else v.rjust(w)
                        for i, (v, w) in enumerate(zip(values, widths))).rstrip()
    group_line = " " * (sum(widths[:2]) + 1)
    for index, (title, _, _) in enumerate(GROUPS):
        span = sum(widths[2 + 3 * index:5 + 3 * index]) + 2
        group_line += " " + f" {title} ".center(span, "-")
    rule = "-" * len(line(heads))
    return "\n".join([group_line.rstrip(), line(heads), rule] + [line(c) for c in cells])


def markdown_table(rows: list[Row], header: str) -> str:
    heads, cells = table_cells(rows)
    titles = ["model", "target"] + [f"{v} {unit}" for _, unit, _ in
                                    (("", "ms", 0), ("", "KB", 0), ("", "err", 0))
                                    for v in VARIANTS] + ["int8/simp latency", "ships"]
    align = [":--", ":--"] + ["--:"] * (len(heads) - 3) + [":--"]
    lines = [header.replace("\n", "; "), "", "| " + " | ".join(titles) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(c) + " |" for c in cells]
    return "\n".join(lines) + "\n"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1]
                return " ".join(re.sub(r"\((R|TM)\)|\bCPU\b", "", name).split())
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def header_line(args: argparse.Namespace) -> str:
    threads = f"{args.threads} thread" + ("s" if args.threads > 1 else "")
    return (f"{datetime.date.today().isoformat()}, {cpu_model()}; batch 1, {threads}, "
            f"{args.blocks} blocks per model\nonnxruntime {ort.__version__}, onnxsim "
            f"{importlib.metadata.version('onnxsim')}, torch {torch.__version__}")


FOOTNOTE = "\n".join([
    "simp: after the target's simplify pass; int8: the target's quantize settings, mode on;",
    "int8/simp: INT8 latency / simplified fp32 latency; ships: what the target's own mode keeps",
    "(cpu: quantize off; auto: INT8 only if within the target's INT8 budget and >= 5% faster,",
    "else fp32 with the reason); error: max over the outputs against PyTorch at batch "
    f"{ERROR_BATCH}, seed 0.",
])


# --- main -------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1,
                        help="intra-op threads for every session (default 1)")
    parser.add_argument("--blocks", type=int, default=31,
                        help="timed blocks per model variant (default 31)")
    parser.add_argument("--models", help="comma-separated subset of " + ", ".join(MODELS))
    parser.add_argument("--targets", help="comma-separated subset of " + ", ".join(TARGETS))
    parser.add_argument("--markdown", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    if args.threads < 1 or args.blocks < 3:
        parser.error("need --threads >= 1 and --blocks >= 3")
    args.model_list = _subset(parser, args.models, MODELS, "model")
    args.target_list = _subset(parser, args.targets, TARGETS, "target")
    return args


def _subset(parser, text: str | None, known: list[str], kind: str) -> list[str]:
    if not text:
        return list(known)
    wanted = [w.strip() for w in text.split(",") if w.strip()]
    unknown = [w for w in wanted if w not in known]
    if unknown:
        parser.error(f"unknown {kind}(s) {', '.join(unknown)}; choose from "
                     f"{', '.join(known)}")
    return wanted


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    host = PluginHost()
    rows: list[Row] = []
    with host.registered(ExportOnly(), "bench"), \
            tempfile.TemporaryDirectory(prefix="onnxport-targets-") as tmp:
        for name in args.model_list:
            print(f"{name} ...", file=sys.stderr, flush=True)
            for row in bench_model(name, args.target_list, host, Path(tmp), args):
                rows.append(row)
                for note in row.notes:
                    print(f"  {row.target}: {note}", file=sys.stderr, flush=True)
    header = header_line(args)
    table = text_table(rows)
    print(header)
    print(table)
    print(FOOTNOTE)
    if args.markdown:
        args.markdown.write_text(f"{markdown_table(rows, header)}\n{FOOTNOTE}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
