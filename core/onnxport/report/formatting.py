"""Numbers, sizes, budgets and aligned tables as text, shared by every report."""

from __future__ import annotations

from typing import Iterable, Sequence


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    rows = [[str(c) for c in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in rows)) if rows else len(str(h))
              for i, h in enumerate(header)]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


def human_bytes(size: int | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def error_text(value: float | str | None) -> str:
    if isinstance(value, str):  # "nan"/"inf" as written to JSON
        return value
    return "-" if value is None else f"{value:.1e}"


def cosine_text(value: float | str | None) -> str:
    if isinstance(value, str) or value is None:
        return value or "-"
    return f"{value:.6f}"


def ms_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


#: The mark on a speedup the verification stage found noisy (see flow/verification.py).
NOISY_MARK = "?"
NOISY_NOTE = (f"{NOISY_MARK} after a speedup: its interleaved runs spread too widely to "
              "trust; time it on a quiet machine with onnxport bench --with-source")


def speedup_text(latency: dict | None) -> str:
    """The source-to-ONNX speedup as measured side by side, marked when it is noisy."""
    latency = latency or {}
    speedup = latency.get("speedup")
    if speedup is None and latency.get("source") and latency.get("onnx"):
        speedup = latency["source"] / latency["onnx"]  # a report from before interleaving
    if not speedup:
        return "-"
    return f"{speedup:.1f}x" + (NOISY_MARK if latency.get("noisy") else "")


def budget_text(tol) -> str:
    parts = [] if tol.atol == float("inf") else [f"atol {tol.atol:g} rtol {tol.rtol:g}"]
    if tol.min_cosine is not None:
        parts.append(f"cos>={tol.min_cosine:g}")
    if tol.max_abs_of_range is not None:
        parts.append(f"err<={tol.max_abs_of_range:g}xrange")
    if tol.min_argmax_agreement is not None:
        parts.append(f"argmax>={tol.min_argmax_agreement:g}")
    return ", ".join(parts)
