"""Numbers, sizes, budgets and aligned tables as text, shared by every report."""

from __future__ import annotations

from typing import Any, Iterable, Sequence


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


def candidate_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The candidates table (terminal and report.md): per target with a choice, each
    candidate model timed side by side at the target's batch sizes, its verdict and why
    not. No rows when no target had more than one candidate."""
    rows = []
    for name, target in report["targets"].items():
        batches = [str(b) for b in target.get("latency_batches", [1])]
        routes = {c["name"].split(" > ")[0] for c in target.get("candidates", [])}
        for candidate in target.get("candidates", []):
            label = candidate["name"]
            if len(routes) == 1:  # one export route: the chain after it says it all
                label = " > ".join(label.split(" > ")[1:]) or "export"
            latency = candidate.get("latency_ms") or {}
            timed = " / ".join(ms_text((latency.get(b) or {}).get("p50")) for b in batches)
            verdict = {"shipped": "SHIPPED"}.get(candidate["verdict"], candidate["verdict"])
            rows.append([name, label, verdict, timed,
                         human_bytes(candidate.get("size_bytes")),
                         error_text(candidate.get("max_abs")), candidate.get("cause") or ""])
    first = next((t for t in report["targets"].values() if t.get("candidates")), {})
    batches = "/".join(str(b) for b in first.get("latency_batches", [1]))
    return (["target", "candidate", "verdict", f"ms @ batch {batches}", "size", "max|err|",
             "why not"], rows)
