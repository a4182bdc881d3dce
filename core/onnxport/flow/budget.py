"""Where and how fast: whether the machine that converts is the target's, and whether the
shipped model meets the target's real-time budget.

Timings (the candidates' choice, the budget) are measured on the machine that converts.
When that is not the device a target describes (`Target.machine`, `Target.cpu_flags`,
an accelerator missing here), the report says so, with the basis of the decision, and
what to do: decide by hand (`--quantize on|off`), or measure on the device (`onnxport
bench --budget`). (A target whose provider is missing here is not timed at all:
flow/choosing.py.)
"""

from __future__ import annotations

import platform
import statistics
import time
from typing import Any, Mapping, Sequence

import numpy as np

from onnxport.flow.environment import cpu_flags, machine
from onnxport.flow.targets import missing_accelerator
from onnxport.records import RunOptions, Target

BUDGET_RUNS = 200  # enough runs that a p99 is a measured value, not the slowest of few
_ALIASES = {"amd64": "x86_64", "arm64": "aarch64"}


def elsewhere(target: Target, ran: Sequence[str] = ()) -> str:
    """Why this machine is not the target's device ("" when it is, or may be); `ran`:
    the execution providers its models ran on here."""
    missing = missing_accelerator(target, ran)
    if missing:
        return f"{target.name} runs on {missing}, which is not available here"
    here = _ALIASES.get(platform.machine().lower(), platform.machine().lower())
    if target.machine and _ALIASES.get(target.machine, target.machine) != here:
        return f"this machine is {here}, {target.name} is {target.machine}"
    missing = [f for f in target.cpu_flags if f not in cpu_flags()]
    if missing:
        return f"this CPU lacks {', '.join(missing)}, which {target.name}'s has"
    return ""


def measured_elsewhere_note(target: Target, decided: bool, ran: Sequence[str] = ()
                            ) -> str:
    why = elsewhere(target, ran)
    if not why:
        return ""
    what = ("the choice among its candidates was timed" if decided
            else "latency was measured")
    return (f"{what} on this machine ({machine()['cpu']}) and {why}: it "
            "may differ on the device; decide by hand with the pass's mode (--quantize "
            "on|off), or measure there with onnxport bench --budget")


def check_budget(runner, path, options: RunOptions, feeds: Mapping[str, np.ndarray],
                 budget_ms: float, batch: int, runs: int = BUDGET_RUNS
                 ) -> dict[str, Any]:
    """p50 and p99 of the shipped model at the budget's batch, and whether p99 fits."""
    session = runner.open(path, options)
    try:
        for _ in range(5):
            session.run(feeds)
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            session.run(feeds)
            times.append((time.perf_counter() - started) * 1000)
    finally:
        session.close()
    p99 = float(np.percentile(times, 99))
    return {"budget_ms": budget_ms, "batch": batch, "runs": runs,
            "p50_ms": statistics.median(times), "p99_ms": p99, "met": p99 <= budget_ms,
            "threads": options.threads, "machine": machine()["cpu"]}


def parse_budget(text: str) -> tuple[float, int]:
    """`50` or `50@8`: p99 milliseconds at a batch size (default 1)."""
    from onnxport.errors import BadInput

    value, _, batch = str(text).removesuffix("ms").partition("@")
    try:
        budget = (float(value.strip().removesuffix("ms")), int(batch) if batch else 1)
    except ValueError:
        raise BadInput(f"--latency-budget {text!r} is not MS[@BATCH]",
                       "write it like 50 (p99 50 ms at batch 1) or 80@8") from None
    if budget[0] <= 0 or budget[1] < 1:
        raise BadInput(f"--latency-budget {text!r}: milliseconds > 0, batch >= 1")
    return budget
