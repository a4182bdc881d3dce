"""Benchmark the Keras reference models: Keras vs ONNX Runtime, file sizes, memory.

The autopilot project (shared/seeds/000) moved its Keras 3 LSTM to ONNX because it was
smaller, faster and needed far less memory on a Raspberry Pi (0.11 ms vs 27.5 ms, 240 KB
vs 626 KB, 20-50 MB vs ~600 MB). This script measures the same things side by side on
this machine, for the Keras reference models in examples/zoo:

- latency at batch 1, with the same intra-op thread count for TensorFlow and ORT (set
  before TensorFlow starts; inter-op 1): the Keras eager call `model(x, training=False)`,
  `model.predict(x)`, the model compiled as a `tf.function` (for reference: how fast
  TensorFlow itself can be), and ONNX Runtime on the converted model; all four are timed
  in alternating blocks of runs, so noise on a shared machine hits them alike;
- the .keras file against the .onnx file;
- the peak resident memory (VmHWM) of a fresh process that loads the model and runs it
  once: with TensorFlow/Keras, and with onnxruntime and numpy only.

    python benchmarks/keras_models.py [--threads N] [--runs N] [--warmup N]
                                      [--models a,b] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Callable

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parent.parent
ZOO = ROOT / "examples" / "zoo"
BLOCK = 5  # runs per block when alternating the runtimes
MODELS = ("autopilot_keras", "planner_keras")

TF_CHILD = """
import os, sys
os.environ["KERAS_BACKEND"] = "tensorflow"; os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import numpy as np, keras, tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads({threads})
tf.config.threading.set_inter_op_parallelism_threads(1)
model = keras.saving.load_model({keras_path!r}, compile=False)
feeds = dict(np.load({inputs!r}))
x = [feeds[t.name] for t in model.inputs]
model(x if len(x) > 1 else x[0], training=False)
model.predict(x if len(x) > 1 else x[0], verbose=0)
"""

ORT_CHILD = """
import numpy as np, onnxruntime as ort
options = ort.SessionOptions()
options.intra_op_num_threads = {threads}
options.inter_op_num_threads = 1
session = ort.InferenceSession({onnx_path!r}, options, providers=["CPUExecutionProvider"])
session.run(None, dict(np.load({inputs!r})))
"""


@dataclass
class Row:
    model: str
    call_ms: float
    predict_ms: float
    graph_ms: float
    ort_ms: float
    keras_bytes: int
    onnx_bytes: int
    tf_rss: int  # bytes
    ort_rss: int
    max_abs: float | None
    p90: dict[str, float]


# --- setup ------------------------------------------------------------------------------

def load_zoo(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"zoo_{name}", ZOO / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def save_keras(name: str, workdir: Path) -> Path:
    module = load_zoo(name)
    if hasattr(module, "save"):  # autopilot: trained briefly, with its custom loss
        return module.save(workdir / f"{name}.keras")
    path = workdir / f"{name}.keras"
    module.make_model().save(path)
    return path


# --- latency ----------------------------------------------------------------------------

def interleaved_ms(runners: dict[str, Callable[[], object]], runs: int,
                   warmup: int) -> dict[str, list[float]]:
    for _ in range(warmup):
        for run in runners.values():
            run()
    times: dict[str, list[float]] = {name: [] for name in runners}
    while len(next(iter(times.values()))) < runs:
        count = min(BLOCK, runs - len(next(iter(times.values()))))
        for name, run in runners.items():
            for _ in range(count):
                start = time.perf_counter()
                run()
                times[name].append((time.perf_counter() - start) * 1e3)
    return times


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


# --- memory -----------------------------------------------------------------------------

HIGH_WATER_MARK = """
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        print("VmHWM", int(line.split()[1]) * 1024)
"""


def peak_rss(code: str) -> int:
    """Peak resident set size, in bytes, of a fresh Python process running `code`: its
    own VmHWM, read by the process at the end (a forked child's ru_maxrss would start
    from this benchmark process's)."""
    done = subprocess.run([sys.executable, "-c", code + HIGH_WATER_MARK],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"memory probe failed ({done.returncode}): "
                           f"{done.stderr[-800:]}")
    return int(next(line.split()[1] for line in done.stdout.splitlines()
                    if line.startswith("VmHWM")))


# --- one model --------------------------------------------------------------------------

def bench_model(name: str, workdir: Path, args: argparse.Namespace) -> Row:
    import keras
    import numpy as np
    import onnxruntime as ort
    import tensorflow as tf

    import onnxport

    keras_path = save_keras(name, workdir)
    result = onnxport.convert(str(keras_path), output=workdir / name, latency_runs=0,
                              threads=args.threads, overwrite=True)
    onnx_path = result.model_path
    model = keras.saving.load_model(keras_path, compile=False)
    feeds = load_zoo(name).example_inputs(batch=1)
    inputs_path = workdir / f"{name}.inputs.npz"
    np.savez(inputs_path, **feeds)
    x = [feeds[t.name] for t in model.inputs]
    x = x if len(x) > 1 else x[0]
    graph = tf.function(lambda value: model(value, training=False), reduce_retracing=True)
    tensors = tf.nest.map_structure(tf.constant, x)
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(onnx_path), options,
                                   providers=["CPUExecutionProvider"])
    times = interleaved_ms({
        "call": lambda: model(x, training=False),
        "predict": lambda: model.predict(x, verbose=0),
        "graph": lambda: graph(tensors),
        "ort": lambda: session.run(None, feeds),
    }, args.runs, args.warmup)
    tf_rss = peak_rss(TF_CHILD.format(threads=args.threads, keras_path=str(keras_path),
                                      inputs=str(inputs_path)))
    ort_rss = peak_rss(ORT_CHILD.format(threads=args.threads, onnx_path=str(onnx_path),
                                        inputs=str(inputs_path)))
    return Row(
        model=name, call_ms=statistics.median(times["call"]),
        predict_ms=statistics.median(times["predict"]),
        graph_ms=statistics.median(times["graph"]), ort_ms=statistics.median(times["ort"]),
        keras_bytes=keras_path.stat().st_size, onnx_bytes=onnx_path.stat().st_size,
        tf_rss=tf_rss, ort_rss=ort_rss,
        max_abs=result.artifacts[0].verification.max_abs,
        p90={k: percentile(v, 90) for k, v in times.items()})


# --- reporting --------------------------------------------------------------------------

# (header line 1, header line 2, markdown header, cell formatter, left-aligned)
COLUMNS: list[tuple[str, str, str, Callable[[Row], str], bool]] = [
    ("model", "", "model", lambda r: r.model, True),
    ("keras call", "ms p50", "keras call ms", lambda r: f"{r.call_ms:.3f}", False),
    ("predict", "ms p50", "predict ms", lambda r: f"{r.predict_ms:.3f}", False),
    ("tf.function", "ms p50", "tf.function ms", lambda r: f"{r.graph_ms:.3f}", False),
    ("ort", "ms p50", "ort ms", lambda r: f"{r.ort_ms:.3f}", False),
    ("call/ort", "", "call/ort", lambda r: f"{r.call_ms / r.ort_ms:.0f}x", False),
    ("predict/ort", "", "predict/ort", lambda r: f"{r.predict_ms / r.ort_ms:.0f}x", False),
    (".keras", "size", ".keras size", lambda r: size_text(r.keras_bytes), False),
    (".onnx", "size", ".onnx size", lambda r: size_text(r.onnx_bytes), False),
    ("RSS", "keras+TF", "RSS keras+TF", lambda r: size_text(r.tf_rss), False),
    ("RSS", "ort only", "RSS ort only", lambda r: size_text(r.ort_rss), False),
    ("max abs", "err", "max abs err", lambda r: error_text(r.max_abs), False),
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
    import keras
    import onnxruntime as ort
    import tensorflow as tf

    date = datetime.date.today().isoformat()
    threads = f"{args.threads} thread" + ("s" if args.threads > 1 else "")
    return (f"{date}, {cpu_model()}; batch 1, {threads}, {args.runs} runs; "
            f"tensorflow {tf.__version__}, keras {keras.__version__}, "
            f"onnxruntime {ort.__version__}")


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


def markdown_table(rows: list[Row], header: str) -> str:
    heads = [md for _, _, md, _, _ in COLUMNS]
    align = [":--" if left else "--:" for *_, left in COLUMNS]
    lines = [header, "", "| " + " | ".join(heads) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(fmt(r) for _, _, _, fmt, _ in COLUMNS) + " |" for r in rows]
    return "\n".join(lines) + "\n"


FOOTNOTE = ("keras call = model(x, training=False) (eager); predict = model.predict(x); "
            "tf.function = the same call compiled by TensorFlow; RSS = peak resident "
            "memory of a fresh process that loads the model and runs it once")


# --- main -------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1,
                        help="intra-op threads for TensorFlow and ORT (default 1)")
    parser.add_argument("--runs", type=int, default=50, help="timed runs per runtime")
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs first")
    parser.add_argument("--models", help=f"comma-separated subset of {', '.join(MODELS)}")
    parser.add_argument("--markdown", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    if args.runs < 2 or args.threads < 1 or args.warmup < 0:
        parser.error("need --runs >= 2, --threads >= 1, --warmup >= 0")
    wanted = [m.strip() for m in (args.models or ",".join(MODELS)).split(",") if m.strip()]
    unknown = set(wanted) - set(MODELS)
    if unknown:
        parser.error(f"unknown model(s): {', '.join(sorted(unknown))}")
    args.models = wanted
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ["CUDA_VISIBLE_DEVICES"] = "-1"  # this benchmark process measures the CPU
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    with tempfile.TemporaryDirectory(prefix="onnxport-keras-bench-") as tmp:
        rows = []
        for name in args.models:
            print(f"{name} ...", file=sys.stderr, flush=True)
            rows.append(bench_model(name, Path(tmp), args))
            p90 = ", ".join(f"{k} {v:.3f}" for k, v in rows[-1].p90.items())
            print(f"  p90 ms: {p90}", file=sys.stderr, flush=True)
    header = header_line(args)
    print(header)
    print(text_table(rows))
    print(FOOTNOTE)
    if args.markdown:
        args.markdown.write_text(f"{markdown_table(rows, header)}\n{FOOTNOTE}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
