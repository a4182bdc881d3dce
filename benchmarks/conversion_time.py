"""Where a conversion's own time goes, and what it costs beside a bare export.

For each model: a plain `torch.onnx.export` script (import torch, build the model, export
with a dynamic batch: what a team writes by hand) and `onnxport convert` with default
options (the worker process, load, export, verification at two batch sizes, simplify,
fuse check, the reports), each a whole process, interleaved round by round so the
machine's load hits both alike. The table gives the median wall time of each, their
ratio, and the median share of each stage of onnxport's run (from report.json's
timings; "other" is process start-up, imports and writing the artifact).

    .venv/bin/python benchmarks/conversion_time.py [--rounds 3] [--only planner]

Run on demand; never a test.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ZOO = ROOT / "examples" / "zoo"
# (label, factory file, function): the reference models and a tiny BERT.
MODELS = [(name, ZOO / f"{name}.py", "build")
          for name in ("autopilot_torch", "planner", "wakeword", "localization")]
MODELS.append(("bert", ROOT / "benchmarks" / "breadth_models.py", "bert_seqcls"))

BARE = """
import importlib.util, sys, torch
spec = importlib.util.spec_from_file_location("m", {path!r})
module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)
built = module.{function}()
model, inputs = built[0], built[1]
names = list(built[2]) if len(built) > 2 else None
batch = torch.export.Dim("batch", min=1, max=1024)
torch.onnx.export(model, (), {out!r}, kwargs=inputs, dynamo=True, input_names=list(inputs),
                  output_names=names, dynamic_shapes={{k: {{0: batch}} for k in inputs}})
"""


def timed(command: list[str]) -> tuple[float, int]:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    return time.perf_counter() - started, done.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", action="append", default=[])
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="onnxport-conversion-time-"))
    rows = []
    for name, path, function in [m for m in MODELS if not args.only or m[0] in args.only]:
        bare, ours, stages = [], [], []
        for round_ in range(args.rounds):
            out = work / f"{name}-{round_}"
            shutil.rmtree(out, ignore_errors=True)
            commands = [("bare", [sys.executable, "-c",
                                  BARE.format(path=str(path), function=function,
                                              out=str(work / "bare.onnx"))]),
                        ("onnxport", [str(BIN / "onnxport"), "convert", f"{path}:{function}",
                                      "-o", str(out)])]
            if round_ % 2:
                commands.reverse()
            for label, command in commands:
                seconds, code = timed(command)
                if code != 0:
                    print(f"{name}: {label} exited {code}", file=sys.stderr)
                (bare if label == "bare" else ours).append(seconds)
                if label == "onnxport" and code == 0:
                    timings = json.loads((out / "report.json").read_text())["timings_s"]
                    stages.append((seconds, timings))
        b, o = statistics.median(bare), statistics.median(ours)
        share = {}
        for seconds, timings in stages:
            for key, value in timings.items():
                if key == "total":
                    continue
                group = key.split(":")[0].split(" ")[0]  # "verify simplify:cpu" -> verify
                share.setdefault(group, []).append(value)
        parts = {k: statistics.median(v) for k, v in share.items()}
        parts["other"] = o - sum(parts.values())
        rows.append((name, b, o, parts))
        print(f"{name}: bare {b:.1f} s, onnxport {o:.1f} s ({o / b:.2f}x)", file=sys.stderr)
    print(f"\n{args.rounds} interleaved rounds per model, whole processes, wall seconds\n")
    print("| model | bare export s | onnxport convert s | ratio | onnxport's time by stage |")
    print("|---|---|---|---|---|")
    for name, b, o, parts in rows:
        split = ", ".join(f"{k} {v:.1f}" for k, v in sorted(parts.items(),
                                                            key=lambda kv: -kv[1]))
        print(f"| {name} | {b:.1f} | {o:.1f} | {o / b:.2f}x | {split} |")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
