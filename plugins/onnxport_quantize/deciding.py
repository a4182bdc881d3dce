"""Mode auto: keep the verified INT8 model only where it pays off on this machine.

prefer = "speed" (the default) times the fp32 and the INT8 model side by side in this
process: onnxruntime sessions with the target's providers and graph optimisation level
and the same thread settings, batch 1 (every symbolic dimension set to 1), a warm-up,
then alternating blocks of runs (fp32, INT8, INT8, fp32, ...) so that noise on a shared
machine lands on both; each block gives a mean per run, and the medians of the blocks are
compared. INT8 is kept only when it is at least `speed_margin` (5%) faster: a smaller
difference is within what this measurement can tell apart on a busy machine, and fp32 is
the safer model to ship when the two are as fast.

prefer = "size" keeps INT8 whenever its files are smaller (no timing).
"""

from __future__ import annotations

import math
import statistics
import time
from pathlib import Path
from typing import Any, Callable

from onnxport.artifact.modelinfo import describe_model
from onnxport.records import PassContext, Target

from .options import parse_options

BLOCKS = 21  # blocks per model (odd: the median is one of them)
BLOCK_SECONDS = 0.01  # a block is at least this long
WARMUP = 3


def accept(previous: Path, candidate: Path, context: PassContext) -> tuple[bool, str]:
    options = parse_options(context.options, context.target.name)
    if options.mode == "on":
        return True, "mode on: INT8 ships because it met the INT8 budget"
    if options.prefer == "size":
        return size_decision(describe_model(previous).size_bytes,
                             describe_model(candidate).size_bytes)
    try:
        fp32_ms, int8_ms = side_by_side(previous, candidate, context.target,
                                        options.threads)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        return False, (f"could not time INT8 against fp32 ({type(exc).__name__}: {first}), "
                       "kept fp32")
    return speed_decision(fp32_ms, int8_ms, options.speed_margin, options.threads)


def size_decision(fp32_bytes: int, int8_bytes: int) -> tuple[bool, str]:
    ratio = int8_bytes / fp32_bytes if fp32_bytes else float("inf")
    figures = (f"INT8 {_size(int8_bytes)} vs fp32 {_size(fp32_bytes)} "
               f"({ratio:.2f}x)")
    if int8_bytes < fp32_bytes:
        return True, f"{figures}: smaller, kept INT8 (prefer = size)"
    return False, f"{figures}: not smaller, kept fp32 (prefer = size)"


def speed_decision(fp32_ms: float, int8_ms: float, margin: float,
                   threads: int = 1) -> tuple[bool, str]:
    figures = (f"INT8 {_ms(int8_ms)} vs fp32 {_ms(fp32_ms)} at batch 1, {threads} "
               f"thread{'s' if threads != 1 else ''}")
    if int8_ms <= fp32_ms * (1 - margin):
        gain = 1 - int8_ms / fp32_ms
        return True, f"{figures}: {gain:.0%} faster here, kept INT8"
    if int8_ms < fp32_ms:
        return False, (f"{figures}: less than {margin:.0%} faster here (within noise), "
                       "kept fp32")
    return False, f"{figures}: slower here, kept fp32"


def side_by_side(fp32: Path, int8: Path, target: Target, threads: int
                 ) -> tuple[float, float]:
    """Median ms per run at batch 1 of each model, timed in alternating blocks."""
    fp32_run, int8_run = (_runner(path, target, threads) for path in (fp32, int8))
    return interleaved_medians(fp32_run, int8_run)


def interleaved_medians(a: Callable[[], Any], b: Callable[[], Any],
                        blocks: int = BLOCKS) -> tuple[float, float]:
    for _ in range(WARMUP):
        a()
        b()
    one = max(_time_once(a), _time_once(b))
    per_block = max(1, min(1000, math.ceil(BLOCK_SECONDS / max(one, 1e-6))))
    times: tuple[list[float], list[float]] = ([], [])
    for index in range(blocks):
        order = ((a, times[0]), (b, times[1]))
        for run, out in (order if index % 2 == 0 else order[::-1]):
            started = time.perf_counter()
            for _ in range(per_block):
                run()
            out.append((time.perf_counter() - started) * 1000 / per_block)
    return statistics.median(times[0]), statistics.median(times[1])


def _time_once(run: Callable[[], Any]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
           "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}


def _runner(path: Path, target: Target, threads: int) -> Callable[[], Any]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.graph_optimization_level = getattr(
        ort.GraphOptimizationLevel,
        _LEVELS.get(target.graph_optimization_level, "ORT_ENABLE_ALL"))
    available = set(ort.get_available_providers())
    providers = [(p, dict(target.provider_options.get(p, {})))
                 for p in target.providers if p in available]
    if not any(p == "CPUExecutionProvider" for p, _ in providers):
        providers.append(("CPUExecutionProvider", {}))
    session = ort.InferenceSession(str(path), options, providers=providers)
    feeds = batch_one_feeds(session)
    return lambda: session.run(None, feeds)


_NUMPY = {"tensor(float)": "float32", "tensor(double)": "float64",
          "tensor(float16)": "float16", "tensor(int64)": "int64", "tensor(int32)": "int32",
          "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(bool)": "bool"}


def batch_one_feeds(session) -> dict[str, Any]:
    """One input per model input: symbolic dims set to 1, floats uniform in [-1, 1),
    integers and booleans zero."""
    import numpy as np

    rng = np.random.default_rng(0)
    feeds = {}
    for spec in session.get_inputs():
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in spec.shape]
        dtype = np.dtype(_NUMPY.get(spec.type, "float32"))
        if dtype.kind == "f":
            feeds[spec.name] = rng.uniform(-1, 1, shape).astype(dtype)
        else:
            feeds[spec.name] = np.zeros(shape, dtype)
    return feeds


def _ms(value: float) -> str:
    return f"{value:.3g} ms"


def _size(size: int) -> str:
    for unit, scale in (("MB", 1e6), ("KB", 1e3)):
        if size >= scale:
            return f"{size / scale:.2f} {unit}"
    return f"{size} B"
