"""Reproduce the reference models' published figures on this machine (shared/ZOO.md).

For each reference model, side by side in one run: file size, latency at batch 1 and
peak memory of a process that runs the model, for the source framework, the fp32 ONNX
model in onnxruntime and the INT8 ONNX model, with the error against the source. The
figures the original projects reported are printed beside ours. Writes the table as
Markdown (default docs/benchmarks.md) with the date and the machine.

    python benchmarks/zoo_figures.py [--runs 200] [--threads 1] [--markdown FILE]

Latency is measured in interleaved blocks (source, fp32, INT8, source, ...) so noise on
a shared machine hits all three alike; compare the ratios. Memory is the peak resident
set (VmHWM) of a fresh process that imports only what it needs, loads the model and
runs it 50 times.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
ZOO = ROOT / "examples" / "zoo"

# What the original projects reported (shared/ZOO.md), shown beside our figures.
ANCHORS = {
    "autopilot-keras": "ONNX 240 KB vs .keras 626 KB; 0.11 ms vs 27.53 ms; "
                       "20-50 MB vs ~600 MB; max |diff| 1.9e-7",
    "autopilot-torch": "~1 ms PyTorch vs 0.11 ms ONNX Runtime",
    "planner": "must run at 10-20 Hz (50-100 ms budget)",
    "wakeword": "INT8 ~0.6 MB vs FP32 ~2.4 MB, ~40% faster",
    "localization": "ONNX 20-30 ms vs PyTorch 40-50 ms (1.5-2.5x), MAE < 1e-5",
}


@dataclass
class Model:
    name: str
    framework: str  # "torch" or "keras"
    source: str  # what onnxport converts
    classifier: str | None = None


MODELS = [
    Model("autopilot-keras", "keras", "autopilot_keras.keras"),
    Model("autopilot-torch", "torch", f"{ZOO}/autopilot_torch.py:build"),
    Model("planner", "torch", f"{ZOO}/planner.py:build"),
    Model("wakeword", "torch", f"{ZOO}/wakeword.py:build", classifier="logits"),
    Model("localization", "torch", f"{ZOO}/localization.py:build"),
]


@dataclass
class Row:
    model: str
    sizes: dict[str, int] = field(default_factory=dict)
    latency: dict[str, float] = field(default_factory=dict)
    memory: dict[str, float] = field(default_factory=dict)
    errors: dict[str, float] = field(default_factory=dict)
    int8: str = ""


def convert(model: Model, work: Path, threads: int):
    import onnxport

    source = model.source
    if model.framework == "keras":
        sys.path.insert(0, str(ZOO))
        import autopilot_keras

        source = str(autopilot_keras.save(work / "keras"))
    fp32 = onnxport.convert(source, output=work / "fp32", latency_runs=0, threads=threads,
                            targets=["cpu"])
    try:
        int8 = onnxport.convert(source, output=work / "int8", latency_runs=0,
                                threads=threads, targets=["cpu"], keep_failed=True,
                                pass_options={"quantize": {"mode": "on"}},
                                classifiers=[model.classifier] if model.classifier else None)
    except onnxport.VerificationFailed as failure:  # measured anyway, marked as failing
        int8 = failure.result
    return source, fp32, int8


def source_size(model: Model, source: str, work: Path) -> int:
    if model.framework == "keras":
        return Path(source).stat().st_size
    import torch

    sys.path.insert(0, str(ZOO))
    module = __import__(Path(source.split(":")[0]).stem)
    path = work / "state_dict.pt"
    torch.save(module.make_model().state_dict(), path)
    return path.stat().st_size


def open_source(model: Model, source: str, threads: int):
    """A callable that runs the source model on numpy feeds, and its feeds at batch 1."""
    sys.path.insert(0, str(ZOO))
    if model.framework == "keras":
        import keras

        net = keras.models.load_model(source, compile=False)
        feeds = {"sensors": np.random.default_rng(0).standard_normal((1, 20, 25))
                 .astype("float32")}
        return (lambda: net(feeds["sensors"], training=False)), feeds
    import torch

    torch.set_num_threads(threads)
    module = __import__(Path(source.split(":")[0]).stem)
    net, inputs, _ = module.build(batch=1)
    tensors = list(inputs.values())

    def run():
        with torch.inference_mode():
            net(*tensors)

    return run, {k: v.numpy() for k, v in inputs.items()}


def ort_session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def interleaved_latency(runners: dict[str, callable], runs: int, block: int = 10
                        ) -> dict[str, float]:
    for run in runners.values():
        for _ in range(10):
            run()
    samples: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(max(1, runs // block)):
        for name, run in runners.items():
            for _ in range(block):
                started = time.perf_counter()
                run()
                samples[name].append((time.perf_counter() - started) * 1000)
    return {name: statistics.median(values) for name, values in samples.items()}


_CHILD = r"""
import sys, json
kind, path, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
import numpy as np
feeds = json.loads(sys.argv[4])
if kind == "onnx":
    import onnxruntime as ort
    o = ort.SessionOptions(); o.intra_op_num_threads = threads
    s = ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])
    arrays = {k: np.zeros(v, np.float32) for k, v in feeds.items()}
    run = lambda: s.run(None, arrays)
elif kind == "torch":
    import torch
    torch.set_num_threads(threads)
    sys.path.insert(0, sys.argv[5])
    module = __import__(path)
    net, inputs, _ = module.build(batch=1)
    def run():
        with torch.inference_mode():
            net(*inputs.values())
else:
    import os
    os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
    import keras
    net = keras.models.load_model(path, compile=False)
    x = np.zeros(feeds["sensors"], np.float32)
    run = lambda: net(x, training=False)
for _ in range(50):
    run()
for line in open("/proc/self/status"):
    if line.startswith("VmHWM"):
        print(int(line.split()[1]) / 1024)
"""


def peak_memory_mb(kind: str, path: str, threads: int, shapes: dict[str, list[int]]) -> float:
    args = [sys.executable, "-c", _CHILD, kind, path, str(threads), json.dumps(shapes),
            str(ZOO)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if done.returncode != 0:
        raise RuntimeError(f"memory probe for {kind} failed: {done.stderr[-500:]}")
    return float(done.stdout.strip().splitlines()[-1])


def measure(model: Model, runs: int, threads: int) -> Row:
    row = Row(model.name)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        source, fp32, int8 = convert(model, work, threads)
        int8_stage = int8.artifacts[0].final
        int8_ok = int8.passed and int8_stage.stage == "quantize"
        row.int8 = ("meets its budget" if int8_ok else
                    f"fails its budget ({int8_stage.verification.problem.split(': ', 1)[-1]})")
        row.sizes = {"source": source_size(model, source, work),
                     "fp32": fp32.model_path.stat().st_size,
                     "int8": int8_stage.info.size_bytes}
        row.errors = {"fp32": fp32.artifacts[0].verification.max_abs,
                      "int8": int8_stage.verification.max_abs}
        run_source, feeds = open_source(model, source, threads)
        candidates = (("fp32", fp32), ("int8", int8)) if int8_ok else (("fp32", fp32),)
        sessions = {name: ort_session(result.model_path, threads)
                    for name, result in candidates}
        row.latency = interleaved_latency({
            "source": run_source,
            **{name: (lambda s=s: s.run(None, feeds)) for name, s in sessions.items()},
        }, runs)
        shapes = {k: list(v.shape) for k, v in feeds.items()}
        source_arg = source if model.framework == "keras" else Path(
            source.split(":")[0]).stem
        row.memory = {"source": peak_memory_mb(model.framework, source_arg, threads, shapes),
                      **{name: peak_memory_mb("onnx", str(result.model_path), threads, shapes)
                         for name, result in candidates}}
    return row


def _kb(size: int) -> str:
    return f"{size / 1000:.0f} KB" if size < 1_000_000 else f"{size / 1e6:.2f} MB"


def render(rows: list[Row], header: str) -> tuple[str, str]:
    columns = ["model", "size src / fp32 / int8", "ms src / fp32 / int8", "speedup fp32",
               "peak MB src / fp32 / int8", "max err fp32 / int8", "INT8"]
    cells = []
    for r in rows:
        cells.append([
            r.model,
            f"{_kb(r.sizes['source'])} / {_kb(r.sizes['fp32'])} / {_kb(r.sizes['int8'])}",
            f"{r.latency['source']:.3g} / {r.latency['fp32']:.3g} / "
            + (f"{r.latency['int8']:.3g}" if "int8" in r.latency else "-"),
            f"{r.latency['source'] / r.latency['fp32']:.1f}x",
            f"{r.memory['source']:.0f} / {r.memory['fp32']:.0f} / "
            + (f"{r.memory['int8']:.0f}" if "int8" in r.memory else "-"),
            f"{r.errors['fp32']:.1e} / {r.errors['int8']:.1e}",
            r.int8,
        ])
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    text = "\n".join([header, "  ".join(c.ljust(w) for c, w in zip(columns, widths))] +
                     ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()
                      for row in cells])
    markdown = "\n".join(
        [f"| {' | '.join(columns)} |", "|" + "---|" * len(columns)] +
        [f"| {' | '.join(row)} |" for row in cells] +
        ["", "What the original projects reported (not measured here):", ""] +
        [f"- {name}: {text}" for name, text in ANCHORS.items()])
    return text, markdown


def machine_line(runs: int, threads: int) -> str:
    import importlib.metadata as md

    cpu = "unknown CPU"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    versions = ", ".join(f"{p} {md.version(p)}" for p in ("torch", "tensorflow-cpu",
                                                          "onnxruntime"))
    return (f"{datetime.date.today().isoformat()} on {cpu} ({os.cpu_count()} cores, "
            f"{platform.system()} {platform.machine()}); batch 1, {threads} thread(s), "
            f"median of {runs} interleaved runs; {versions}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", help="comma-separated subset, e.g. planner,wakeword")
    parser.add_argument("--markdown", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    chosen = [m for m in MODELS if not args.models or m.name in args.models.split(",")]
    rows = []
    for model in chosen:
        print(f"measuring {model.name} ...", file=sys.stderr, flush=True)
        rows.append(measure(model, args.runs, args.threads))
    header = machine_line(args.runs, args.threads)
    text, markdown = render(rows, header)
    print(text)
    args.markdown.write_text(
        "# Reference figures, reproduced\n\n"
        "Regenerate with `make bench` (runs `python benchmarks/zoo_figures.py`).\n\n"
        f"Measured {header}.\n\n" + markdown + "\n")
    print(f"wrote {args.markdown}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
