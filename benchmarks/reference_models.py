"""Benchmark the reference models: PyTorch eager vs ONNX Runtime, and conversion time.

The issue asks two questions of the bundled reference models (examples/zoo): how fast is
the converted model under ONNX Runtime compared with PyTorch eager at batch 1 with the same
intra-op thread count, and where does `onnxport.convert` spend its wall time (export,
verification, the rest). This script answers both in one table.

Torch and ORT are measured side by side in alternating blocks of runs, so noise on a shared
machine lands on both alike; read the speedup ratio rather than the absolute milliseconds.

    python benchmarks/reference_models.py [--threads N] [--runs N] [--warmup N]
                                          [--models a,b] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import platform
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Callable

import onnxruntime as ort
import torch

import onnxport

ZOO = Path(__file__).resolve().parent.parent / "examples" / "zoo"
BLOCK = 10  # runs per block when alternating torch and ORT


@dataclass(frozen=True)
class Case:
    model: str
    exporter: str
    opset: int | None = None  # None: the exporter's default

    @property
    def label(self) -> str:
        return f"{self.model}-{self.exporter}"


CASES = [
    Case("autopilot_torch", "dynamo"),
    Case("autopilot_torch", "torchscript", 14),
    Case("planner", "dynamo"),
    Case("wakeword", "dynamo"),
    Case("localization", "dynamo"),
]


@dataclass
class Row:
    case: Case
    opset: int  # the opset actually written
    torch_ms: float
    ort_ms: float
    torch_p90_ms: float
    ort_p90_ms: float
    onnx_bytes: int
    state_dict_bytes: int
    max_abs: float | None
    export_s: float
    verify_s: float
    overhead_s: float  # total - export - verify; includes load


# --- conversion -------------------------------------------------------------------------

def convert(case: Case, workdir: Path, threads: int) -> onnxport.ConversionResult:
    return onnxport.convert(
        f"{ZOO / case.model}.py:build", output=workdir / case.label,
        exporter=case.exporter, opset=case.opset, latency_runs=0, threads=threads,
        overwrite=True)


def split_timings(timings: dict[str, float]) -> tuple[float, float, float]:
    """(export, verify, overhead incl. load) seconds of one conversion."""
    export, verify = timings["export"], timings["verify:cpu"]
    return export, verify, timings["total"] - export - verify


def onnx_size(model_path: Path) -> int:
    """The .onnx file plus any external-data files written next to it."""
    files = [model_path, *model_path.parent.glob(model_path.name + ".*")]
    return sum(f.stat().st_size for f in files if f.is_file())


def state_dict_size(model: torch.nn.Module, workdir: Path, name: str) -> int:
    path = workdir / f"{name}.state_dict.pt"
    torch.save(model.state_dict(), path)
    return path.stat().st_size


# --- latency ----------------------------------------------------------------------------

def load_zoo(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"zoo_{name}", ZOO / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def torch_runner(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> Callable[[], None]:
    model.eval()

    def run() -> None:
        with torch.inference_mode():
            model(**inputs)
    return run


def ort_runner(model_path: Path, inputs: dict[str, torch.Tensor],
               threads: int) -> Callable[[], None]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(model_path), options,
                                   providers=["CPUExecutionProvider"])
    feed = {name: tensor.numpy() for name, tensor in inputs.items()}
    missing = {i.name for i in session.get_inputs()} - feed.keys()
    if missing:
        raise RuntimeError(f"{model_path.name}: no value for ONNX inputs {sorted(missing)}")

    def run() -> None:
        session.run(None, feed)
    return run


def interleaved_ms(a: Callable[[], None], b: Callable[[], None], runs: int,
                   warmup: int) -> tuple[list[float], list[float]]:
    """Per-run milliseconds of `a` and `b`, timed in alternating blocks of BLOCK runs."""
    for _ in range(warmup):
        a()
        b()
    times: tuple[list[float], list[float]] = ([], [])
    while len(times[0]) < runs:
        count = min(BLOCK, runs - len(times[0]))
        for fn, out in ((a, times[0]), (b, times[1])):
            for _ in range(count):
                start = time.perf_counter()
                fn()
                out.append((time.perf_counter() - start) * 1e3)
    return times


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


# --- one case ---------------------------------------------------------------------------

def bench_case(case: Case, workdir: Path, args: argparse.Namespace) -> Row:
    result = convert(case, workdir, args.threads)
    export_s, verify_s, overhead_s = split_timings(result.timings)
    model, inputs, _ = load_zoo(case.model).build(batch=1)
    torch.set_num_threads(args.threads)  # again: conversion may have changed it
    torch_ms, ort_ms = interleaved_ms(
        torch_runner(model, inputs), ort_runner(result.model_path, inputs, args.threads),
        args.runs, args.warmup)
    return Row(
        case=case, opset=result.exported.opset,
        torch_ms=statistics.median(torch_ms), ort_ms=statistics.median(ort_ms),
        torch_p90_ms=percentile(torch_ms, 90), ort_p90_ms=percentile(ort_ms, 90),
        onnx_bytes=onnx_size(result.model_path),
        state_dict_bytes=state_dict_size(model, workdir, case.label),
        max_abs=result.artifacts[0].verification.max_abs,
        export_s=export_s, verify_s=verify_s, overhead_s=overhead_s)


# --- reporting --------------------------------------------------------------------------

# (header line 1, header line 2, markdown header, cell formatter, left-aligned)
COLUMNS: list[tuple[str, str, str, Callable[[Row], str], bool]] = [
    ("model", "", "model", lambda r: r.case.model, True),
    ("exporter", "", "exporter", lambda r: r.case.exporter, True),
    ("torch", "ms p50", "torch ms (p50)", lambda r: f"{r.torch_ms:.3f}", False),
    ("ort", "ms p50", "ort ms (p50)", lambda r: f"{r.ort_ms:.3f}", False),
    ("speedup", "torch/ort", "speedup (torch/ort)", lambda r: f"{r.torch_ms / r.ort_ms:.2f}x",
     False),
    ("onnx", "size", "onnx size", lambda r: size_text(r.onnx_bytes), False),
    ("state_dict", "size", "state_dict size", lambda r: size_text(r.state_dict_bytes), False),
    ("max abs", "err", "max abs err", lambda r: error_text(r.max_abs), False),
    ("export", "s", "export s", lambda r: f"{r.export_s:.2f}", False),
    ("verify", "s", "verify s", lambda r: f"{r.verify_s:.2f}", False),
    ("overhead", "+load s", "overhead s (incl. load)", lambda r: f"{r.overhead_s:.2f}", False),
]


def size_text(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024 ** 2:
        return f"{n / 1024:.0f} KB"
    return f"{n / 1024 ** 2:.1f} MB"


def error_text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1e}"


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
    date = datetime.date.today().isoformat()
    threads = f"{args.threads} thread" + ("s" if args.threads > 1 else "")
    return (f"{date}, {cpu_model()}; batch 1, {threads}, {args.runs} runs; "
            f"torch {torch.__version__}, onnxruntime {ort.__version__}")


def text_table(rows: list[Row]) -> str:
    cells = [[fmt(r) for _, _, _, fmt, _ in COLUMNS] for r in rows]
    heads = [(h1, h2) for h1, h2, _, _, _ in COLUMNS]
    widths = [max(len(h1), len(h2), *(len(c[i]) for c in cells))
              for i, (h1, h2) in enumerate(heads)]

    def line(values: list[str]) -> str:
        return " ".join(v.ljust(w) if col[4] else v.rjust(w)
                        for v, w, col in zip(values, widths, COLUMNS)).rstrip()
    first = line([h1 for h1, _ in heads])
    lines = [first, line([h2 for _, h2 in heads]), "-" * len(first)]
    return "\n".join(lines + [line(c) for c in cells])


def footnote(rows: list[Row], warmup: int) -> str:
    opsets = {r.case.exporter: set() for r in rows}
    for r in rows:
        opsets[r.case.exporter].add(r.opset)
    used = ", ".join(f"{e} {'/'.join(map(str, sorted(o)))}" for e, o in opsets.items())
    return (f"opset: {used}; overhead = total - export - verify (includes load); "
            f"{warmup} warmup runs")


def progress(row: Row) -> str:
    return (f"  torch p50 {row.torch_ms:.3f} / p90 {row.torch_p90_ms:.3f} ms, "
            f"ort p50 {row.ort_ms:.3f} / p90 {row.ort_p90_ms:.3f} ms")


def markdown_table(rows: list[Row], header: str) -> str:
    heads = [md for _, _, md, _, _ in COLUMNS]
    align = [":--" if left else "--:" for *_, left in COLUMNS]
    lines = [header, "", "| " + " | ".join(heads) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(fmt(r) for _, _, _, fmt, _ in COLUMNS) + " |" for r in rows]
    return "\n".join(lines) + "\n"


# --- main -------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1,
                        help="intra-op threads for torch and ORT (default 1)")
    parser.add_argument("--runs", type=int, default=200, help="timed runs per model")
    parser.add_argument("--warmup", type=int, default=20, help="untimed runs first")
    parser.add_argument("--models", help="comma-separated subset, e.g. planner,wakeword")
    parser.add_argument("--markdown", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    if args.runs < 2 or args.threads < 1 or args.warmup < 0:
        parser.error("need --runs >= 2, --threads >= 1, --warmup >= 0")
    return args


def select_cases(models: str | None) -> list[Case]:
    if not models:
        return CASES
    wanted = [m.strip() for m in models.split(",") if m.strip()]
    unknown = set(wanted) - {c.model for c in CASES}
    if unknown:
        raise SystemExit(f"unknown model(s): {', '.join(sorted(unknown))}; "
                         f"choose from {', '.join(dict.fromkeys(c.model for c in CASES))}")
    return [c for c in CASES if c.model in wanted]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cases = select_cases(args.models)
    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already fixed once torch ran something in parallel
        pass
    with tempfile.TemporaryDirectory(prefix="onnxport-bench-") as tmp:
        rows = []
        for case in cases:
            print(f"{case.model} ({case.exporter}) ...", file=sys.stderr, flush=True)
            rows.append(bench_case(case, Path(tmp), args))
            print(progress(rows[-1]), file=sys.stderr, flush=True)
    header = header_line(args)
    print(header)
    print(text_table(rows))
    note = footnote(rows, args.warmup)
    print(note)
    if args.markdown:
        args.markdown.write_text(f"{markdown_table(rows, header)}\n{note}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
