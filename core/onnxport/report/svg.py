"""The report's plots as inline SVG, written by hand: no plotting library, nothing
fetched, a few kilobytes each, so report.html has its plots whatever is installed.

- `error_histogram`: |onnx - source| per decade as a bar chart (bar height on a log
  scale, the count above each bar), with the output's atol marked;
- `latency_boxes`: ms per call as one horizontal box plot per series (box: quartiles,
  bar: median, whiskers: Tukey's 1.5 interquartile ranges, dots: the runs beyond) on a
  log axis.

Each returns "" when the plot would not inform (see `histogram_informs`,
`latency_informs`); the page then says it in words.
"""

from __future__ import annotations

import html
import math
import statistics
from typing import Any, Sequence

BAR = "#3b6ea8"
ZERO_BAR = "#8aa9cc"
MARK = "#b4481f"
GRID = "#e3e8ee"
INK = "#1d2733"
MUTED = "#5d6b7b"
FONT = "font-family='system-ui,sans-serif'"

MIN_ELEMENTS = 10  # fewer compared values: the table's figures say it all
MIN_SAMPLES = 5  # fewer timed runs: no distribution to draw


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _n(value: float) -> str:
    """A coordinate, short: 12.5, 3."""
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _open(width: int, height: int, label: str) -> str:
    return (f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
            f"viewBox='0 0 {width} {height}' role='img' aria-label='{_e(label)}' "
            f"{FONT} font-size='11'><title>{_e(label)}</title>")


# --------------------------------------------------------------------------- histogram


def histogram_bins(histogram: dict[str, Any],
                   atol: float | None = None) -> list[tuple[str, int]]:
    """(label, count) per bin: exact zeros first, then each decade up to its upper edge,
    trimmed to the decades that hold values, one empty decade either side, and the
    decade of `atol` if one is given."""
    edges, counts = histogram["edges"], histogram["counts"]
    decades = [(f"1e{round(math.log10(edges[i + 1]))}", int(c)) for i, c in enumerate(counts)]
    keep = [i for i, (_, c) in enumerate(decades) if c]
    if keep and atol and atol > 0:
        keep += [i for i in range(len(decades)) if edges[i] < atol <= edges[i + 1]]
    if keep:
        decades = decades[max(min(keep) - 1, 0):max(keep) + 2]
    else:
        decades = []
    return [("0", int(histogram.get("zeros", 0)))] + decades


def histogram_informs(histogram: dict[str, Any] | None) -> bool:
    """A histogram says something a table row does not: enough values, spread over at
    least two bins."""
    if not histogram:
        return False
    total = int(histogram.get("zeros", 0)) + sum(histogram["counts"])
    filled = sum(1 for _, c in histogram_bins(histogram) if c)
    return total >= MIN_ELEMENTS and filled >= 2


def histogram_words(histogram: dict[str, Any] | None) -> str:
    """The histogram in one sentence, where no plot is drawn."""
    if not histogram:
        return "no error histogram recorded"
    total = int(histogram.get("zeros", 0)) + sum(histogram["counts"])
    bins = [(label, c) for label, c in histogram_bins(histogram) if c]
    if not bins:
        return "no values compared"
    if len(bins) == 1 and bins[0][0] == "0":
        return f"all {total} value{'s' if total != 1 else ''} equal the source's exactly"
    parts = [f"{c} exactly 0" if label == "0" else f"{c} up to {label}" for label, c in bins]
    return f"{total} value{'s' if total != 1 else ''}: " + ", ".join(parts)


def error_histogram(histogram: dict[str, Any], atol: float | None, label: str) -> str:
    """|error| per decade as bars; "" when it would not inform."""
    if not histogram_informs(histogram):
        return ""
    bins = histogram_bins(histogram, atol)
    left, right, top, bottom = 14, 14, 20, 34
    slot = max(24, 260 // len(bins))
    width = left + right + slot * len(bins)
    height = 150
    plot = height - top - bottom
    tallest = math.log10(1 + max(c for _, c in bins))
    parts = [_open(width, height, label)]
    parts.append(f"<line x1='{left}' y1='{height - bottom}' x2='{width - right}' "
                 f"y2='{height - bottom}' stroke='{MUTED}'/>")
    for i, (name, count) in enumerate(bins):
        x = left + i * slot
        h = plot * math.log10(1 + count) / tallest if count else 0
        y = height - bottom - h
        colour = ZERO_BAR if name == "0" else BAR
        if count:
            parts.append(f"<rect x='{_n(x + 3)}' y='{_n(y)}' width='{slot - 6}' "
                         f"height='{_n(h)}' fill='{colour}'><title>{_e(name)}: {count}"
                         f"</title></rect>")
            parts.append(f"<text x='{_n(x + slot / 2)}' y='{_n(y - 3)}' "
                         f"text-anchor='middle' font-size='9' fill='{INK}'>"
                         f"{_count(count)}</text>")
        parts.append(f"<text x='{_n(x + slot / 2)}' y='{height - bottom + 12}' "
                     f"text-anchor='middle' font-size='9' fill='{MUTED}'>{_e(name)}</text>")
    if atol and atol > 0:
        position = _atol_position(bins, atol)
        if position is not None:
            x = left + position * slot
            anchor, at = ("end", x - 3) if x > width - 60 else ("start", x + 3)
            parts.append(f"<line x1='{_n(x)}' y1='{top - 6}' x2='{_n(x)}' "
                         f"y2='{height - bottom}' stroke='{MARK}' stroke-dasharray='3 2'/>"
                         f"<text x='{_n(at)}' y='{top - 9}' font-size='9' "
                         f"text-anchor='{anchor}' fill='{MARK}'>atol {atol:g}</text>")
    parts.append(f"<text x='{left}' y='{height - 6}' font-size='10' fill='{MUTED}'>"
                 "|error| up to; first bar: exact zeros</text></svg>")
    return "".join(parts)


def _atol_position(bins: list[tuple[str, int]], atol: float) -> float | None:
    """Where atol falls along the bars, in slots (a decade's bar ends at its label)."""
    for i, (name, _) in enumerate(bins):
        if name == "0":
            continue
        upper = float(name)
        if atol <= upper:
            lower = upper / 10
            fraction = (math.log10(atol) - math.log10(lower)) if atol > lower else 0.0
            return i + max(0.0, min(1.0, fraction))
    return None


def _count(count: int) -> str:
    if count >= 1_000_000:
        return f"{count / 1e6:.3g}M"
    if count >= 10_000:
        return f"{count / 1e3:.3g}k"
    return str(count)


# --------------------------------------------------------------------------- latency


def latency_informs(series: Sequence[tuple[str, Sequence[float]]]) -> bool:
    return any(len(values) >= MIN_SAMPLES for _, values in series)


def latency_boxes(series: Sequence[tuple[str, Sequence[float]]], label: str) -> str:
    """One horizontal box per series on a shared log axis; "" without samples."""
    series = [(name, sorted(float(v) for v in values if v and v > 0))
              for name, values in series]
    series = [(name, values) for name, values in series if len(values) >= MIN_SAMPLES]
    if not series:
        return ""
    stats = {name: _box(values) for name, values in series}
    low = min(s[0] for s in stats.values())
    high = max(s[4] for s in stats.values())
    lo, hi = math.log10(low), math.log10(high)
    if hi - lo < 0.3:  # a narrow range: widen it around its middle
        middle = (hi + lo) / 2
        lo, hi = middle - 0.15, middle + 0.15
    lo, hi = lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo)
    left, right, top, row = 70, 70, 8, 26
    width = 520
    height = top + row * len(series) + 30
    span = width - left - right

    def x_of(value: float) -> float:
        return left + span * (math.log10(value) - lo) / (hi - lo)

    parts = [_open(width, height, label)]
    axis_y = top + row * len(series)
    for tick in _log_ticks(lo, hi):
        x = x_of(tick)
        parts.append(f"<line x1='{_n(x)}' y1='{top}' x2='{_n(x)}' y2='{axis_y}' "
                     f"stroke='{GRID}'/><text x='{_n(x)}' y='{axis_y + 12}' "
                     f"text-anchor='middle' font-size='9' fill='{MUTED}'>{tick:g}</text>")
    for i, (name, values) in enumerate(series):
        low_whisker, q1, median, q3, high_whisker = stats[name]
        y = top + i * row + row / 2
        colour = MUTED if name == "source" else BAR
        parts.append(f"<text x='{left - 6}' y='{_n(y + 4)}' text-anchor='end' "
                     f"fill='{INK}'>{_e(name)}</text>")
        parts.append(f"<line x1='{_n(x_of(low_whisker))}' y1='{_n(y)}' "
                     f"x2='{_n(x_of(high_whisker))}' y2='{_n(y)}' stroke='{colour}'/>")
        outside = [v for v in values if v < low_whisker or v > high_whisker]
        shown = [v for v in outside if 10 ** lo <= v <= 10 ** hi]
        parts += [f"<circle cx='{_n(x_of(v))}' cy='{_n(y)}' r='1.8' fill='none' "
                  f"stroke='{colour}'/>" for v in shown]
        if len(shown) < len(outside):
            parts.append(f"<text x='{width - right - 2}' y='{_n(y - 6)}' text-anchor='end' "
                         f"font-size='9' fill='{MUTED}'>+{len(outside) - len(shown)} "
                         "off scale</text>")
        parts.append(f"<rect x='{_n(x_of(q1))}' y='{_n(y - 7)}' "
                     f"width='{_n(max(x_of(q3) - x_of(q1), 1))}' height='14' "
                     f"fill='{colour}' fill-opacity='0.25' stroke='{colour}'>"
                     f"<title>{_e(name)}: median {median:.3g} ms, quartiles {q1:.3g} to "
                     f"{q3:.3g} ms, {len(values)} runs</title></rect>")
        parts.append(f"<line x1='{_n(x_of(median))}' y1='{_n(y - 7)}' "
                     f"x2='{_n(x_of(median))}' y2='{_n(y + 7)}' stroke='{INK}' "
                     "stroke-width='2'/>")
        parts.append(f"<text x='{width - right + 6}' y='{_n(y + 4)}' fill='{INK}'>"
                     f"{median:.3g} ms</text>")
    parts.append(f"<text x='{left}' y='{height - 4}' font-size='10' fill='{MUTED}'>"
                 "ms per call (log scale); box: quartiles, bar: median, whiskers: "
                 "1.5 IQR, dots: runs beyond</text></svg>")
    return "".join(parts)


def _box(values: list[float]) -> tuple[float, float, float, float, float]:
    """(low whisker, q1, median, q3, high whisker) of sorted values: Tukey's whiskers,
    the most extreme runs within 1.5 interquartile ranges of the box."""
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    reach = 1.5 * (q3 - q1)
    low = min(v for v in values if v >= q1 - reach)
    high = max(v for v in values if v <= q3 + reach)
    return low, q1, median, q3, high


def _log_ticks(lo: float, hi: float) -> list[float]:
    """1, 2, 5 x 10^k inside [10^lo, 10^hi]; fewer when the range is wide."""
    steps = (1, 2, 5) if hi - lo <= 2.5 else (1,)
    ticks = []
    for k in range(math.floor(lo), math.ceil(hi) + 1):
        for step in steps:
            value = step * 10.0 ** k
            if lo <= math.log10(value) <= hi:
                ticks.append(float(f"{value:.6g}"))
    return ticks
