"""What the training callback adds to the autopilot example's training wall time, with
the conversion in the foreground and in the background, against no callback at all.

Each run is a fresh process of `examples/autopilot_training.py` (the PyTorch autopilot,
150 steps, the seed's TorchScript exporter at opset 14), which reports
`training_s` (from the first step until the training code goes on: the `with` block
has returned) and `export_done_s` (until the export is finished and verified). Two
triggers: once at the end of training, and at each new best validation loss (three
evaluations). The configurations are interleaved round by round, in a rotating order,
so the machine's load hits each alike; the table shows medians. `--threads` (default 1)
sets OMP_NUM_THREADS for the runs: on a 2-core machine, one core trains and the other is
left for a background conversion (and a shared machine's load does not turn OpenMP's
spinning threads into noise).

    .venv/bin/python benchmarks/training_overhead.py [--rounds 3] [--steps 150]
        [--threads 1]

Run on demand; never a test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "autopilot_training.py"
CONFIGS = [("-", "off"), ("end", "foreground"), ("end", "background"),
           ("every best", "foreground"), ("every best", "background")]


def run(trigger: str, mode: str, steps: int, output: Path, threads: int) -> dict:
    command = [sys.executable, str(EXAMPLE), "--output", str(output), "--steps",
               str(steps), "--export", mode, "--no-checkpoint-flow"]
    if trigger == "every best":
        command.append("--every-best")
    started = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=1800,
                          env=env)
    process = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    line = next(l for l in done.stdout.splitlines() if l.startswith("timing "))
    timing = json.loads(line.removeprefix("timing "))
    timing["process_s"] = process
    return timing


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    results: dict[tuple[str, str], list[dict]] = {c: [] for c in CONFIGS}
    with tempfile.TemporaryDirectory(prefix="onnxport-training-overhead-") as scratch:
        for round_ in range(args.rounds):
            order = CONFIGS[round_ % len(CONFIGS):] + CONFIGS[:round_ % len(CONFIGS)]
            for trigger, mode in order:
                output = Path(scratch) / f"{round_}-{trigger.replace(' ', '-')}-{mode}"
                timing = run(trigger, mode, args.steps, output, args.threads)
                results[(trigger, mode)].append(timing)
                print(f"round {round_ + 1}: {trigger:10s} {mode:10s} "
                      f"{json.dumps(timing)}", file=sys.stderr, flush=True)
    baseline = statistics.median(r["training_s"] for r in results[CONFIGS[0]])
    rows = [("export at", "conversion", "training wall s", "added s", "added %",
             "export done s", "process s", "exports")]
    for (trigger, mode), runs in results.items():
        training = statistics.median(r["training_s"] for r in runs)
        done = [r["export_done_s"] for r in runs if "export_done_s" in r]
        rows.append((trigger, "no callback" if mode == "off" else mode,
                     f"{training:.1f}",
                     "-" if mode == "off" else f"{training - baseline:+.1f}",
                     "-" if mode == "off" else
                     f"{100 * (training - baseline) / baseline:+.0f}%",
                     f"{statistics.median(done):.1f}" if done else "-",
                     f"{statistics.median(r['process_s'] for r in runs):.1f}",
                     "-" if mode == "off" else
                     "/".join(str(r.get("exports", 0)) for r in runs)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |"
             for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    print(f"autopilot example, {args.steps} steps, {args.threads} thread(s), medians of "
          f"{args.rounds} interleaved rounds (exports: triggered per round; load average "
          f"{os.getloadavg()[0]:.1f} at the end)")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
