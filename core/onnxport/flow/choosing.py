"""Which candidate ships: the fastest that verified, timed side by side.

Every candidate of a target (a chain of stages that verified against the source) that
the run allows (a required pass, such as INT8 in mode "on", must be in its chain) is
timed at each of the target's `latency_batches`, in the target's runner with its
providers, on one thread unless `--threads` says otherwise: blocks of runs of at least
10 ms, the candidates' order rotated every round so that noise on a shared machine lands
on all of them, the median block per candidate and batch. A candidate's time is the
geometric mean of its medians over the batch sizes; the spread is the 90th percentile
block over the median.

A target whose accelerator is missing here (cuda on a machine without CUDA: its first
execution provider is one of `flow.targets.ACCELERATORS`) is not timed: the CPU
fallback's figures say nothing about the device, so the most accurate candidate ships
(the smallest with `prefer = "size"`), and a pass's mode "on" is how to ship its model
anyway.

A candidate beats the one chosen so far only when it is faster by more than `MARGIN`
(5%, about what this measurement tells apart on a busy machine). Within the margin the
two are a tie: one that is both smaller and no less accurate wins it, else the more
accurate one stays (the safer model to ship when they run as fast). A target with
`prefer = "size"` ships the smallest candidate instead, timed all the same.
"""

from __future__ import annotations

import math
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from onnxport.conversion import Candidate, StageResult
from onnxport.flow.candidates import TargetRun
from onnxport.flow.inputs import random_inputs
from onnxport.flow.targets import missing_accelerator
from onnxport.flow.verification import Reference
from onnxport.records import RunOptions

MARGIN = 0.05
BLOCKS = 15  # blocks per candidate and batch size (odd: the median is one of them)
BLOCK_SECONDS = 0.01
WARMUP = 3


def candidates_of(run: TargetRun) -> list[Candidate]:
    """The run's candidates, each named by its chain; `verdict` set for those the run
    does not allow (a required pass missing from its chain)."""
    out = []
    for chain in run.chains:
        candidate = Candidate(_name(run, chain), chain)
        passes = {s.stage.split(" ")[0] for s in chain[1:]}
        missing = sorted(run.required - passes)
        if missing:
            candidate.verdict, candidate.cause = "not eligible", f"needs {missing[0]}"
            candidate.reason = (f"the run requires {', '.join(missing)} (its mode is on), "
                                "which this candidate does not have")
        out.append(candidate)
    return out


def choose(run: TargetRun, candidates: list[Candidate], reference: Reference,
           threads: int | None) -> Candidate:
    """Time the eligible candidates side by side and mark the one that ships; each
    other one gets its verdict and why. (The choice is timed whatever --latency-runs
    says: that option is about the report's figures, this is the decision.)"""
    eligible = [c for c in candidates if not c.verdict]
    if len(eligible) == 1:
        winner = eligible[0]
        winner.verdict = "shipped"
        if len(candidates) > 1:  # the others lack a pass the run requires
            passes = ", ".join(sorted(run.required))
            winner.reason = (f"the run requires {passes} (mode on), and this is the "
                             "only candidate with it; it met its budget")
            winner.cause = f"the only one with {passes} (required)"
        return winner
    missing = missing_provider(run)
    if missing:
        return _not_timed(eligible, run, missing)
    threads = threads or 1
    batches = _batches(run, reference)
    medians, spreads = time_side_by_side(
        [c.final.path for c in eligible], run.runner,
        RunOptions(providers=run.run_options.providers,
                   provider_options=run.run_options.provider_options, threads=threads,
                   graph_optimization_level=run.run_options.graph_optimization_level),
        batches)
    for index, candidate in enumerate(eligible):
        candidate.latency_ms = {b: {"p50": medians[index][b], "p90": spreads[index][b]}
                                for b in batches}
    winner = _pick(eligible, run.target.prefer)
    winner.verdict = "shipped"
    winner.reason = _why_won(winner, eligible, threads)
    fastest = min(eligible, key=score)
    winner.cause = ("the smallest (prefer = size)" if run.target.prefer == "size" else
                    "the fastest" if winner is fastest else "as fast as the fastest, safer")
    for other in eligible:
        if other is not winner:
            other.verdict = "lost"
            other.reason, other.cause = _why_lost(other, winner, threads,
                                                  run.target.prefer)
    return winner


def missing_provider(run: TargetRun) -> str:
    """The accelerator the target runs on, when its models ran on another provider here
    (flow/targets.missing_accelerator)."""
    verification = run.stages[0].verification if run.stages else None
    return missing_accelerator(run.target, verification.providers if verification else [])


def _not_timed(eligible: list[Candidate], run: TargetRun, missing: str) -> Candidate:
    size = run.target.prefer == "size"
    winner = min(eligible, key=lambda c: (_size(c), _error(c)) if size
                 else (_error(c), _size(c)))
    why = (f"{missing} is not available here, so the candidates were not timed (the "
           f"fallback's figures say nothing about {run.target.name}'s device)")
    winner.verdict = "shipped"
    winner.cause = ("the smallest (prefer = size; not timed here)" if size
                    else "the most accurate (not timed here)")
    winner.reason = (f"{why}: the {'smallest' if size else 'most accurate'} that "
                     "verified ships; a pass's mode on ships its model instead (e.g. "
                     "--pass-option float16.mode=on)")
    for other in eligible:
        if other is not winner:
            other.verdict = "lost"
            other.cause = ("larger" if size else "less accurate") + " (not timed here)"
            other.reason = (f"not timed ({missing} is not available here): "
                            f"{_figures_error(other)} vs {_figures_error(winner)}")
    return winner


def _figures_error(candidate: Candidate) -> str:
    return f"max error {_error(candidate):.2g}, {_size(candidate)} bytes"


def _pick(eligible: list[Candidate], prefer: str) -> Candidate:
    if prefer == "size":
        return min(eligible, key=lambda c: (_size(c), _error(c)))
    best = eligible[0]
    for candidate in eligible[1:]:
        if score(candidate) < score(best) * (1 - MARGIN):
            best = candidate
        elif score(candidate) <= score(best) * (1 + MARGIN) and \
                _size(candidate) < _size(best) and _error(candidate) <= _error(best):
            best = candidate
    return best


def score(candidate: Candidate) -> float:
    """Geometric mean of the median ms per run over the batch sizes timed."""
    values = [v["p50"] for v in candidate.latency_ms.values()]
    return math.exp(sum(math.log(max(v, 1e-9)) for v in values) / len(values))


def time_side_by_side(paths: Sequence[Path], runner, options: RunOptions,
                      batches: Mapping[int, Mapping[str, np.ndarray]]
                      ) -> tuple[list[dict[int, float]], list[dict[int, float]]]:
    """Median and 90th-percentile ms per run of each model at each batch, timed in
    blocks whose order rotates every round."""
    sessions = [runner.open(path, options) for path in paths]
    try:
        medians: list[dict[int, float]] = [{} for _ in paths]
        p90: list[dict[int, float]] = [{} for _ in paths]
        for batch, feeds in batches.items():
            calls = [(lambda s=s: s.run(feeds)) for s in sessions]
            blocks = interleaved_blocks(calls)
            for index, times in enumerate(blocks):
                medians[index][batch] = statistics.median(times)
                p90[index][batch] = float(np.percentile(times, 90))
        return medians, p90
    finally:
        for session in sessions:
            session.close()


def interleaved_blocks(calls: Sequence[Callable[[], Any]], blocks: int = BLOCKS
                       ) -> list[list[float]]:
    """ms per call of each function, one value per block, the order rotated each round."""
    for _ in range(WARMUP):
        for call in calls:
            call()
    one = max(_time_once(call) for call in calls)
    per_block = max(1, min(1000, math.ceil(BLOCK_SECONDS / max(one, 1e-6))))
    times: list[list[float]] = [[] for _ in calls]
    for round_ in range(blocks):
        order = list(range(len(calls)))
        order = order[round_ % len(order):] + order[:round_ % len(order)]
        if round_ % 2:
            order.reverse()
        for index in order:
            started = time.perf_counter()
            for _ in range(per_block):
                calls[index]()
            times[index].append((time.perf_counter() - started) * 1000 / per_block)
    return times


def _time_once(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def _batches(run: TargetRun, reference: Reference) -> dict[int, dict[str, np.ndarray]]:
    """Inputs at each of the target's batch sizes (the verified batch if it is fixed)."""
    settings = reference.settings
    if reference.inputs_info and reference.inputs_info[0].shape[:1] == ["batch"]:
        return {b: random_inputs(reference.inputs_info, b, settings.seed,
                                 reference.example_shapes, settings.input_ranges)
                for b in run.target.latency_batches}
    feeds = reference.inputs(reference.labels[0])
    rows = next(iter(feeds.values())).shape[0] if feeds else 1
    return {rows: feeds}


def _name(run: TargetRun, chain: list[StageResult]) -> str:
    """`torchscript > fuse > simplify > quantize (per_channel=true)`: the chain says
    what each stage started from, so a stage's own "after ..." is left out."""
    route = run.exported.exporter or "export"
    return " > ".join([route, *(s.stage.split(" after ")[0] for s in chain[1:])])


def _size(candidate: Candidate) -> int:
    return candidate.final.info.size_bytes if candidate.final.info else 0


def _error(candidate: Candidate) -> float:
    worst = candidate.final.verification.max_abs if candidate.final.verification else None
    return math.inf if worst is None or worst != worst else worst


def _figures(candidate: Candidate) -> str:
    return ", ".join(f"{v['p50']:.3g} ms at batch {b}"
                     for b, v in candidate.latency_ms.items())


def _why_won(winner: Candidate, eligible: list[Candidate], threads: int) -> str:
    others = [c for c in eligible if c is not winner]
    fastest_other = min(others, key=score)
    gain = 1 - score(winner) / score(fastest_other)
    where = f"{threads} thread{'s' if threads != 1 else ''}"
    if gain > 0:
        return (f"{_figures(winner)} ({where}): {gain:.0%} faster here than "
                f"{fastest_other.name}")
    return f"{_figures(winner)} ({where}): as fast as the others here, and the safer model"


def _why_lost(loser: Candidate, winner: Candidate, threads: int, prefer: str
              ) -> tuple[str, str]:
    where = f"{threads} thread{'s' if threads != 1 else ''}"
    figures = f"{_figures(loser)} vs {_figures(winner)} ({where})"
    if prefer == "size":
        return (f"{_size(loser)} bytes vs {_size(winner)} bytes: {winner.name} is smaller "
                "(prefer = size)", "larger (prefer = size)")
    if score(loser) > score(winner) * (1 + MARGIN):
        ratio = score(loser) / score(winner)
        return f"{figures}: slower here than {winner.name}", f"{ratio:.2f}x slower"
    which = "smaller" if _size(winner) < _size(loser) else "more accurate"
    return (f"{figures}: within {MARGIN:.0%} of {winner.name} (within noise), which is "
            f"{which}", f"as fast; the winner is {which}")
