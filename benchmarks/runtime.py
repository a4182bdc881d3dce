"""Benchmark the deployment runtime (onnxport.runtime) on the autopilot.

Three questions from the runtime issue, answered in one run:

1. Per-call overhead: how much slower is `InferenceModel.predict` than a bare
   `session.run` on the same onnxruntime session, at batch 1? Measured in this process
   in interleaved blocks (every round times each call form for one short block, in a
   rotating order), so noise on a shared machine lands on all of them alike; the overhead
   is the median over rounds of (form - bare), paired within each round. Target: at most
   5% of the bare call.
2. Import time: `import onnxport.runtime` (with numpy and onnxruntime) in a fresh process.
3. Memory: the peak resident set (VmHWM) of a fresh process that imports what it needs,
   loads the autopilot and runs it, for the runtime, a bare onnxruntime session, PyTorch
   eager and TensorFlow/Keras eager (when examples/zoo/autopilot_keras.py and Keras are
   installed), beside a python + numpy baseline. Target for the runtime: under 60 MB.

    python benchmarks/runtime.py [--threads N] [--rounds N] [--block N] [--repeats N]
                                 [--runs N] [--artifact DIR] [--markdown FILE]

The artifacts are converted first, in child processes (`python -m onnxport convert`), so
this process never imports torch or TensorFlow. Every measured child runs with compiled
bytecode in a temporary PYTHONPYCACHEPREFIX, as an installed package does. No timed
assertions: the script prints figures.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from onnxport.runtime import InferenceModel

ROOT = Path(__file__).resolve().parent.parent
ZOO = ROOT / "examples" / "zoo"
MB = 1024 * 1024  # figures are MiB (VmHWM is in KiB)

# One child process: import, get the autopilot ready, run it; print timings and VmHWM.
CHILD = r"""
import json, os, sys, time
mode, source, threads, runs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

def zoo(path):
    import importlib.util
    spec = importlib.util.spec_from_file_location("zoo_model", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

t0 = time.perf_counter()
import numpy as np
if mode == "ort":
    import onnxruntime as ort
elif mode == "runtime":
    from onnxport.runtime import InferenceModel
elif mode == "torch":
    import torch
elif mode == "keras":
    import tensorflow as tf
    import keras
t1 = time.perf_counter()
x = np.sin(np.arange(500, dtype=np.float32)).reshape(20, 25)  # numpy.random costs MBs
if mode == "python":
    run = lambda: None
elif mode == "ort":
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    feeds = {"sensors": x[None]}
    run = lambda: session.run(None, feeds)
elif mode == "runtime":
    model = InferenceModel(source, threads=threads)
    run = lambda: model.predict(x)
elif mode == "torch":
    torch.set_num_threads(threads)
    model = zoo(source).make_model()
    batch = torch.from_numpy(x[None])
    def run():
        with torch.inference_mode():
            return model(batch)
elif mode == "keras":
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    model = zoo(source).make_model()
    batch = x[None]
    run = lambda: model(batch, training=False)
run()
t2 = time.perf_counter()
times = []
for _ in range(runs):
    start = time.perf_counter()
    run()
    times.append(time.perf_counter() - start)
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
times.sort()
print(json.dumps({"import_s": t1 - t0, "ready_s": t2 - t1,
                  "ms": 1000 * times[len(times) // 2] if times else None,
                  "hwm_kb": int(status["VmHWM"].split()[0]),
                  "rss_kb": int(status["VmRSS"].split()[0])}))
"""

PROCESSES = [  # (mode, label, what it runs)
    ("python", "python + numpy (baseline)", None),
    ("ort", "onnxruntime, bare session", "torch-onnx"),
    ("runtime", "onnxport.runtime", "torch-artifact"),
    ("runtime", "onnxport.runtime, Keras-made", "keras-artifact"),
    ("torch", "PyTorch eager", "torch-zoo"),
    ("keras", "TensorFlow/Keras eager", "keras-zoo"),
]


# --------------------------------------------------------------------------- setup


def installed(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def keras_available() -> str | None:
    """Why the Keras rows cannot run, or None."""
    if not (ZOO / "autopilot_keras.py").exists():
        return "examples/zoo/autopilot_keras.py does not exist"
    missing = [m for m in ("tensorflow", "keras") if importlib.util.find_spec(m) is None]
    if missing:
        return f"{', '.join(missing)} not installed (pip install 'onnxport[keras]')"
    return None


def convert(model: str, out: Path) -> tuple[Path | None, str]:
    done = subprocess.run([sys.executable, "-m", "onnxport", "convert",
                           f"{ZOO / model}.py:build", "-o", str(out), "--latency-runs", "0"],
                          capture_output=True, text=True, cwd=ROOT, timeout=900)
    if done.returncode != 0:
        return None, (done.stderr.strip().splitlines() or ["failed"])[-1]
    return out, ""


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}"


# --------------------------------------------------------------------------- overhead


def overhead(artifact: Path, threads: int, rounds: int, block: int, warmup: int):
    model = InferenceModel(artifact, threads=threads)
    session = model.session
    x = np.random.default_rng(0).standard_normal((1, 20, 25)).astype(np.float32)
    sample, frame = x[0], x[0, -1]
    stream = model.stream()
    for row in sample:
        stream.push(row)
    forms = {
        "session.run (bare)": lambda: session.run(None, {"sensors": x}),
        "predict(array [1, 20, 25])": lambda: model.predict(x),
        "predict(sample [20, 25])": lambda: model.predict(sample),
        "predict({'sensors': array})": lambda: model.predict({"sensors": x}),
        "stream.push(frame [25])": lambda: stream.push(frame),
    }
    for call in forms.values():
        for _ in range(warmup):
            call()
    names = list(forms)
    per_call: dict[str, list[float]] = {name: [] for name in names}
    diffs: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        timed = {}
        for name in names[shift:] + names[:shift]:
            call = forms[name]
            start = time.perf_counter()
            for _ in range(block):
                call()
            timed[name] = (time.perf_counter() - start) / block
        for name in names:
            per_call[name].append(timed[name])
            diffs[name].append(timed[name] - timed[names[0]])
    # The runtime's own Python cost per call, without the noise of the model run: the
    # same forms with the session replaced by a function returning its outputs.
    outputs = session.run(None, {"sensors": x})
    model._run = lambda names, feeds: outputs
    own = {}
    for name in names[1:]:
        call = forms[name]
        best = float("inf")
        for _ in range(20):
            start = time.perf_counter()
            for _ in range(1000):
                call()
            best = min(best, (time.perf_counter() - start) / 1000)
        own[name] = best * 1e6
    del model._run
    rows = []
    bare = statistics.median(per_call[names[0]])
    for name in names:
        extra = statistics.median(diffs[name])
        rows.append((name, statistics.median(per_call[name]) * 1e6, extra * 1e6,
                     extra / bare * 100, own.get(name)))
    return rows


def load_times(artifact: Path, threads: int, repeats: int = 40
               ) -> tuple[float, float, float]:
    """Median ms to create an InferenceModel with and without the sha256 check, and of
    the check alone (check_integrity on the loaded manifest)."""
    from onnxport.runtime import check_integrity

    checked, unchecked, check = [], [], []
    model = InferenceModel(artifact, threads=threads)  # first session creation pays extra
    for i in range(repeats):
        pairs = ((True, checked), (False, unchecked))
        for verify, into in (pairs if i % 2 else pairs[::-1]):
            start = time.perf_counter()
            InferenceModel(artifact, threads=threads, verify_checksum=verify)
            into.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        check_integrity(model.directory, model.manifest)
        check.append((time.perf_counter() - start) * 1000)
    return statistics.median(checked), statistics.median(unchecked), statistics.median(check)


# --------------------------------------------------------------------------- processes


def run_child(mode: str, source: str, threads: int, runs: int, env: dict) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, mode, source, str(threads),
                           str(runs)], capture_output=True, text=True, env=env,
                          timeout=900, cwd=tempfile.gettempdir())
    if done.returncode != 0:
        raise RuntimeError(f"{mode} child failed: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def processes(sources: dict[str, str | None], threads: int, runs: int,
              repeats: int, cache: Path) -> list[tuple]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(PYTHONPYCACHEPREFIX=str(cache), KERAS_BACKEND="tensorflow",
               TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    wanted = []
    for mode, label, key in PROCESSES:
        source = "" if key is None else sources.get(key)
        if source is None:
            continue
        wanted.append((mode, label, source))
    for mode, _, source in wanted:  # compile bytecode and warm the file cache
        run_child(mode, source, threads, 1, env)
    results: dict[str, list[dict]] = {label: [] for _, label, _ in wanted}
    for _ in range(repeats):  # round-robin, so drift hits every row alike
        for mode, label, source in wanted:
            results[label].append(run_child(mode, source, threads, runs, env))
    rows = []
    base = None
    for _, label, _ in wanted:
        got = results[label]
        hwm = statistics.median(r["hwm_kb"] for r in got) * 1024 / MB
        if base is None:
            base = hwm
        ms = [r["ms"] for r in got if r["ms"] is not None]
        rows.append((label, statistics.median(r["import_s"] for r in got),
                     statistics.median(r["ready_s"] for r in got),
                     statistics.median(ms) if ms and label != PROCESSES[0][1] else None,
                     hwm, hwm - base))
    return rows


# --------------------------------------------------------------------------- output


def tables(header: list[str], over: list[tuple], procs: list[tuple], notes: list[str],
           markdown: bool) -> str:
    lines = [*header, ""]
    o_head = ("call at batch 1", "us/call", "overhead us", "overhead %", "own us")
    o_rows = [(n, f"{us:.1f}", "-" if i == 0 else f"{d:+.2f}",
               "-" if i == 0 else f"{p:+.2f}%", "-" if own is None else f"{own:.2f}")
              for i, (n, us, d, p, own) in enumerate(over)]
    p_head = ("process (import, load, run)", "import s", "ready s", "ms/call",
              "max RSS MiB", "+ vs python")
    p_rows = [(n, f"{i:.3f}", f"{r:.3f}", "-" if ms is None else f"{ms:.3f}",
               f"{h:.1f}", "-" if k == 0 else f"{d:+.1f}")
              for k, (n, i, r, ms, h, d) in enumerate(procs)]
    for title, head, rows in (("Per-call overhead over a bare session.run (same session)",
                               o_head, o_rows),
                              ("Fresh processes: import, load and run the autopilot",
                               p_head, p_rows)):
        lines.append(f"## {title}" if markdown else title)
        if markdown:
            lines += ["", "| " + " | ".join(head) + " |",
                      "|" + "|".join("---" if i == 0 else "---:" for i in
                                     range(len(head))) + "|"]
            lines += ["| " + " | ".join(r) + " |" for r in rows]
        else:
            widths = [max(len(str(c)) for c in col) for col in zip(head, *rows)]
            fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}"
                            for i, w in enumerate(widths))
            lines += [fmt.format(*head)] + [fmt.format(*r) for r in rows]
        lines.append("")
    if markdown:
        lines += [f"- {n}" for n in notes]
    else:
        import textwrap

        lines += [textwrap.fill(n, 99, initial_indent="- ", subsequent_indent="  ")
                  for n in notes]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (all)")
    parser.add_argument("--rounds", type=int, default=3000, help="overhead rounds")
    parser.add_argument("--block", type=int, default=5, help="calls per form per round")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3,
                        help="fresh processes per row (medians)")
    parser.add_argument("--runs", type=int, default=200, help="calls in each process")
    parser.add_argument("--artifact", type=Path,
                        help="an autopilot artifact to use instead of converting one")
    parser.add_argument("--markdown", type=Path, help="also write the tables as Markdown")
    args = parser.parse_args(argv)
    if not Path("/proc/self/status").exists():
        parser.error("the memory figures read /proc/self/status (Linux)")

    with tempfile.TemporaryDirectory(prefix="onnxport-bench-runtime-") as workdir:
        return run(args, Path(workdir))


def run(args: argparse.Namespace, workdir: Path) -> int:
    notes: list[str] = []
    print("converting the autopilot(s)...", file=sys.stderr)
    torch_artifact = args.artifact
    if torch_artifact is None:
        torch_artifact, problem = convert("autopilot_torch", workdir / "autopilot_torch")
        if torch_artifact is None:
            print(f"converting autopilot_torch failed: {problem}", file=sys.stderr)
            return 1
    sources: dict[str, str | None] = {
        "torch-artifact": str(torch_artifact),
        "torch-onnx": str(InferenceModel(torch_artifact).path),
        "torch-zoo": str(ZOO / "autopilot_torch.py") if installed("torch") else None,
    }
    if sources["torch-zoo"] is None:
        notes.append("PyTorch row skipped: torch is not installed")
    why_not = keras_available()
    if why_not:
        notes.append(f"TensorFlow rows skipped: {why_not}")
    else:
        sources["keras-zoo"] = str(ZOO / "autopilot_keras.py")
        keras_artifact, problem = convert("autopilot_keras", workdir / "autopilot_keras")
        if keras_artifact is None:
            notes.append(f"Keras-made artifact skipped: conversion failed: {problem}")
        else:
            sources["keras-artifact"] = str(keras_artifact)

    print("per-call overhead...", file=sys.stderr)
    over = overhead(torch_artifact, args.threads, args.rounds, args.block, args.warmup)
    checked_ms, unchecked_ms, check_ms = load_times(torch_artifact, args.threads)
    print("fresh processes...", file=sys.stderr)
    procs = processes(sources, args.threads, args.runs, args.repeats, workdir / "pyc")

    size = sum(f["bytes"] for f in InferenceModel(torch_artifact).manifest["files"])
    runtime_row = next(r for r in procs if r[0] == "onnxport.runtime")
    ort_row = next(r for r in procs if r[0].startswith("onnxruntime"))
    worst = max(p for name, _, _, p, _ in over[1:] if name.startswith("predict"))
    push = next(p for name, _, _, p, _ in over if name.startswith("stream"))
    notes[:0] = [
        f"overhead us: median over {args.rounds} rounds of (form - bare), each timed over "
        f"{args.block} calls in the same round, forms in rotating order; overhead % = that "
        f"/ the bare median. Worst predict form {worst:+.2f}% (target <= 5%: "
        f"{'met' if worst <= 5 else 'NOT met'}); stream.push {push:+.2f}% (it also writes "
        "the frame into its window). `own us`: the runtime's own Python work per call, "
        "timed with the session replaced by a function returning its outputs (best of "
        "20 x 1000 calls)",
        f"import onnxport.runtime (numpy and onnxruntime included), fresh process: "
        f"{runtime_row[1]:.3f} s; of which onnxport.runtime itself "
        f"{runtime_row[1] - ort_row[1]:+.3f} s over `import numpy, onnxruntime`",
        f"runtime max RSS {runtime_row[4]:.1f} MiB = {runtime_row[4] * MB / 1e6:.1f} MB "
        f"(target < 60 MB: {'met' if runtime_row[4] * MB / 1e6 < 60 else 'NOT met'}); "
        f"of it, python + numpy {procs[0][4]:.1f} MiB, onnxruntime and its session "
        f"{ort_row[4] - procs[0][4]:.1f} MiB, onnxport.runtime "
        f"{runtime_row[4] - ort_row[4]:+.1f} MiB over the bare session",
        f"InferenceModel load: {checked_ms:.1f} ms with the sha256 check (default), "
        f"{unchecked_ms:.1f} ms without; the check alone {check_ms:.1f} ms "
        f"({size / 1024:.0f} KiB model; medians of 40)",
        f"every process: {args.threads} intra-op thread(s), {args.runs} calls on one "
        f"[1, 20, 25] window after a first call; medians of {args.repeats} processes per "
        "row run round-robin; `ready s` = build or load the model + the first call; "
        "ms/call rows ran one after another (read reference_models.py for latency)",
        "Keras eager calls `model(x, training=False)`; PyTorch runs under "
        "torch.inference_mode()",
    ]
    header = [
        f"onnxport.runtime benchmark, {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}",
        f"machine: {machine()}",
        "python {} | numpy {} | onnxruntime {} | torch {} | tensorflow {}".format(
            platform.python_version(), np.__version__, installed("onnxruntime"),
            installed("torch") or "-", installed("tensorflow") or
            installed("tensorflow-cpu") or "-"),
    ]
    print(tables(header, over, procs, notes, markdown=False))
    if args.markdown:
        args.markdown.write_text(tables(header, over, procs, notes, markdown=True))
        print(f"wrote {args.markdown}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
