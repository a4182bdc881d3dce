"""A fleet's wall time and memory three ways, side by side in one run: a sequential loop
of `onnxport convert` (what teams do today), `onnxport fleet --executor local`, and
`onnxport fleet --executor ray` (Ray started on this machine).

The reference models times three targets (cpu, x86-avx2, rpi4). The modes are
interleaved round by round so that the machine's load hits each alike; the table shows
each mode's median wall time, its ratio to the loop, the peak memory of all its
processes together (sampled from /proc every 0.2 s) and the largest single worker.

    .venv/bin/python benchmarks/fleet.py [--rounds 2] [--jobs N]

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
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ZOO = ROOT / "examples" / "zoo"
MODELS = {"autopilot_torch": f"{ZOO}/autopilot_torch.py:build",
          "planner": f"{ZOO}/planner.py:build", "wakeword": f"{ZOO}/wakeword.py:build",
          "localization": f"{ZOO}/localization.py:build",
          "planner_keras": f"{ZOO}/planner_keras.py:build"}
TARGETS = ["cpu", "x86-avx2", "rpi4"]
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
       "RAY_USAGE_STATS_ENABLED": "0"}


def tree_rss(root: int) -> int:
    """Resident bytes of `root` and every process below it."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            parents[int(entry)] = int(fields[1])
            rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo += [child for child, parent in parents.items() if parent == pid]
    return total


def measured(command: list[str]) -> tuple[float, int, int]:
    """Wall seconds, peak tree RSS, exit code of one command."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss(process.pid))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    code = process.wait()
    done.set()
    sampler.join()
    return time.perf_counter() - started, peak, code


def run_loop(out: Path) -> tuple[float, int, int]:
    started, peak, codes = time.perf_counter(), 0, 0
    for name, source in MODELS.items():
        targets = [a for t in TARGETS for a in ("--target", t)]
        _, rss, code = measured([str(BIN / "onnxport"), "convert", source, "-o",
                                 str(out / name), "--overwrite", *targets])
        peak, codes = max(peak, rss), codes or code
    return time.perf_counter() - started, peak, codes


def run_fleet(out: Path, executor: str, fleet: Path, jobs: int | None) -> tuple:
    command = [str(BIN / "onnxport"), "fleet", str(fleet), "-o", str(out), "--executor",
               executor, "--force", *(["--jobs", str(jobs)] if jobs else [])]
    return measured(command)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--jobs", type=int, help="--jobs for both fleet modes")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="onnxport-fleet-bench-"))
    fleet = work / "fleet.toml"
    fleet.write_text(f"[defaults]\ntargets = {json.dumps(TARGETS)}\n\n" + "".join(
        f'[[models]]\nname = "{n}"\nsource = "{s}"\n\n' for n, s in MODELS.items()))
    results: dict[str, list[tuple[float, int, int]]] = {"loop": [], "local": [], "ray": []}
    workers: dict[str, int] = {}
    for round_ in range(args.rounds):
        for mode in (["loop", "local", "ray"] if round_ % 2 == 0 else
                     ["ray", "local", "loop"]):
            out = work / f"{mode}-{round_}"
            result = run_loop(out) if mode == "loop" else \
                run_fleet(out, mode, fleet, args.jobs)
            results[mode].append(result)
            print(f"round {round_ + 1} {mode}: {result[0]:.1f} s, peak "
                  f"{result[1] / 2**20:.0f} MB, exit {result[2]}", file=sys.stderr)
            if mode != "loop" and (out / "fleet.json").is_file():
                for model in json.loads((out / "fleet.json").read_text())["models"]:
                    peak = (model["outcome"] or {}).get("peak_rss_bytes") or 0
                    workers[model["name"]] = max(workers.get(model["name"], 0), peak)
    loop = statistics.median(r[0] for r in results["loop"])
    print(f"\n{len(MODELS)} reference models x {len(TARGETS)} targets "
          f"({', '.join(TARGETS)}), {args.rounds} interleaved rounds, "
          f"{os.cpu_count()} CPUs\n")
    print("| mode | wall s (median) | vs loop | peak MB, all processes | exit |")
    print("|---|---|---|---|---|")
    for mode, runs in results.items():
        wall = statistics.median(r[0] for r in runs)
        print(f"| {mode} | {wall:.1f} | {wall / loop:.2f}x | "
              f"{max(r[1] for r in runs) / 2**20:.0f} | {max(r[2] for r in runs)} |")
    print("\n| model | peak MB of its worker |\n|---|---|")
    for name, peak in workers.items():
        print(f"| {name} | {peak / 2**20:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
