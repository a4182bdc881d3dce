"""report.html: the run a person reads, rendered from report.json alone.

One self-contained file (inline CSS, plots embedded as PNG data URIs; nothing is
fetched when it is opened): pass/fail at a glance, then per target and stage the error
figures with the budget that applied, a histogram of |error| per output, the latency
distribution of the source and every ONNX stage, sizes, providers, warnings, the inputs
used and the environment. Plots need matplotlib; without it the page says so.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any

from onnxport.tolerance import from_json
from onnxport.report.formatting import budget_text, cosine_text, error_text, human_bytes, ms_text

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;
max-width:1100px;color:#1d2733;padding:0 1rem}
h1{font-size:1.5rem;margin:0 0 .3rem}h2{font-size:1.2rem;margin-top:2rem;
border-bottom:1px solid #d5dbe3;padding-bottom:.2rem}h3{font-size:1.02rem;margin:1.2rem 0 .4rem}
table{border-collapse:collapse;margin:.4rem 0 1rem;font-size:13px}
th,td{border:1px solid #d5dbe3;padding:.25rem .55rem;text-align:left;vertical-align:top}
th{background:#f1f4f8}td.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:.1rem .55rem;border-radius:.7rem;font-weight:600;
font-size:12px}.pass{background:#d9f2df;color:#14632b}.fail{background:#fbdada;color:#8f1a1a}
.skip{background:#eceff3;color:#4b5563}.warn{background:#fff1cc;color:#7a5600}
.big{font-size:1rem;padding:.25rem .8rem}.muted{color:#5d6b7b}
.plots{display:flex;flex-wrap:wrap;gap:1rem}.plots figure{margin:0}
.plots img{max-width:520px;border:1px solid #e3e8ee}figcaption{font-size:12px;color:#5d6b7b}
ul.warnings li{margin:.15rem 0}code{background:#f1f4f8;padding:0 .25rem;border-radius:3px}
"""

_STATUS = {"ok": ("PASS", "pass"), "passed": ("PASSED", "pass"), "failed": ("FAIL", "fail"),
           "rejected": ("REJECTED", "warn"), "skipped": ("skipped", "skip")}


def render_html(report: dict[str, Any]) -> str:
    plots = _Plotter()
    source = report["source"]
    export = report["export"]
    status_class = "pass" if report["status"] == "passed" else "fail"
    status_text = report["status"].upper()
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>onnxport report: {_e(report['name'])}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{_e(report['name'])} <span class='badge big {status_class}'>"
        f"{status_text}</span></h1>",
        f"<p class='muted'>{_e(source['framework'])} {_e(source['framework_version'])} "
        f"&rarr; ONNX opset {export['opset']} with {_e(export['backend'])}/"
        f"{_e(export['exporter'])} &middot; {_e(source['origin'])} &middot; "
        f"{_e(report['created'])}</p>",
        "<h2 id='summary'>Summary</h2>",
        _summary_table(report),
    ]
    for name, target in report["targets"].items():
        parts.append(_target_section(name, target, plots))
    parts += [
        "<h2 id='inputs'>Inputs used</h2>", _inputs_section(report),
        "<h2 id='environment'>Environment</h2>", _environment_section(report),
    ]
    if not plots.available:
        parts.append("<p class='muted'>Plots need matplotlib: "
                     "<code>pip install matplotlib</code>.</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


# ----------------------------------------------------------------------------- sections


def _summary_table(report: dict[str, Any]) -> str:
    rows = []
    for name, target in report["targets"].items():
        for stage in target["stages"]:
            v = stage.get("verification") or {}
            latency = v.get("latency_ms") or {}
            rows.append([
                _e(name), _e(stage["stage"]), _badge(stage["status"]),
                error_text(v.get("max_abs")), ms_text(latency.get("onnx")),
                ms_text(latency.get("source")), human_bytes(stage.get("size_bytes")),
                _e("/".join(p.replace("ExecutionProvider", "")
                            for p in v.get("providers", [])) or "-"),
                _e(stage.get("reason") or ("" if v.get("passed", True) else
                                           v.get("problem", ""))),
            ])
    return _table(["target", "stage", "status", "max |error|", "onnx ms", "source ms",
                   "size", "ran on", "note"], rows, numeric={3, 4, 5, 6})


def _target_section(name: str, target: dict[str, Any], plots: "_Plotter") -> str:
    text, css = _STATUS[target["status"]]
    parts = [f"<h2 id='target-{_e(name)}'>Target {_e(name)} "
             f"<span class='badge {css}'>{text}</span></h2>",
             f"<p>Shipped model: <code>{_e(target['model'])}</code></p>"]
    if target.get("warnings"):
        parts.append("<ul class='warnings'>" + "".join(
            f"<li><span class='badge warn'>warning</span> {_e(w)}</li>"
            for w in target["warnings"]) + "</ul>")
    latency_series = []
    for stage in target["stages"]:
        v = stage.get("verification")
        parts.append(f"<h3>{_e(stage['stage'])} {_badge(stage['status'])}</h3>")
        if stage.get("reason"):
            parts.append(f"<p class='muted'>{_e(stage['reason'])}</p>")
        if not v:
            continue
        parts.append(_checks(v))
        parts.append(_outputs_table(v))
        images = []
        for output_name, histogram in _worst_histograms(v).items():
            image = plots.histogram(histogram, f"{name} / {stage['stage']} / {output_name}")
            if image:
                images.append(_figure(image, f"|error| of {output_name} vs the source "
                                             f"({stage['stage']}, all batches)"))
        if images:
            parts.append("<div class='plots'>" + "".join(images) + "</div>")
        latency = v.get("latency_ms") or {}
        if latency.get("onnx_samples"):
            if not latency_series:
                latency_series.append(("source", latency.get("source_samples", [])))
            latency_series.append((stage["stage"], latency["onnx_samples"]))
    if latency_series:
        image = plots.latency(latency_series, f"{name}: latency at the first batch")
        if image:
            parts.append("<h3>Latency</h3><div class='plots'>"
                         + _figure(image, "ms per call at the first batch (box: quartiles)")
                         + "</div>")
    return "\n".join(parts)


def _checks(v: dict[str, Any]) -> str:
    items = "".join(
        f"<li>{_badge('ok' if c['passed'] else 'failed')} <b>{_e(c['name'])}</b>: "
        f"{_e(c['detail'])}</li>" for c in v.get("checks", []))
    problem = (f"<p><span class='badge fail'>problem</span> {_e(v['problem'])}</p>"
               if v.get("problem") else "")
    return f"<ul>{items}</ul>{problem}"


def _outputs_table(v: dict[str, Any]) -> str:
    rows = []
    for batch in v.get("batches", []):
        for out in batch["outputs"]:
            agreement = out.get("argmax_agreement")
            rows.append([
                _e(batch["label"]), _e(out["name"]), _badge("ok" if out["passed"]
                                                             else "failed"),
                error_text(out["max_abs"]), error_text(out["mean_abs"]),
                error_text(out["max_rel"]), cosine_text(out["cosine"]),
                "-" if agreement is None else f"{agreement:.0%}"
                + ("" if out.get("classifier") else " (info)"),
                _e(budget_text(from_json(out["tolerance"]))),
                _e(out.get("problem", "")),
            ])
    return _table(["batch", "output", "", "max abs", "mean abs", "max rel", "cosine",
                   "argmax", "budget", "problem"], rows, numeric={3, 4, 5, 6})


def _inputs_section(report: dict[str, Any]) -> str:
    settings = report["verification_settings"]
    head = (f"<p>Seed {settings['seed']}; batch sizes "
            f"{_e(settings['batch_sizes'] or 'default (1, 3)')}; ranges "
            f"{_e(settings['input_ranges'] or 'default [-1, 1], integers [0, 10)')}; "
            f"data {_e(settings['data'] or 'seeded random')}. Rule: "
            f"{_e(settings['rule'])}.</p>")
    first = next(iter(report["targets"].values()))
    verification = first["stages"][0].get("verification") or {}
    rows = [[_e(batch["label"]), _e(name), _e(info["dtype"]), _e(info["shape"]),
             f"{info['min']:.4g}" if info["min"] is not None else "-",
             f"{info['max']:.4g}" if info["max"] is not None else "-"]
            for batch in verification.get("batches", [])
            for name, info in batch["inputs"].items()]
    return head + _table(["batch", "input", "dtype", "shape", "min", "max"], rows)


def _environment_section(report: dict[str, Any]) -> str:
    rows = [[_e(k), _e(v)] for k, v in {**report["machine"], **report["versions"]}.items()]
    timings = ", ".join(f"{k} {v:.2f} s" for k, v in report["timings_s"].items())
    made_by = report["made_by"].get("command") or report["made_by"].get("call", "")
    return (_table(["", ""], rows) + f"<p>Timings: {_e(timings)}</p>"
            f"<p>Made by: <code>{_e(made_by)}</code></p>")


# ----------------------------------------------------------------------------- plots


class _Plotter:
    """matplotlib figures as PNG data URIs; nothing when matplotlib is missing."""

    def __init__(self):
        try:
            import matplotlib

            matplotlib.use("Agg", force=True)
            import matplotlib.pyplot as plt
        except ImportError:
            plt = None
        self.plt = plt
        self.available = plt is not None

    def histogram(self, histogram: dict[str, Any], title: str) -> str | None:
        if self.plt is None:
            return None
        edges, counts = histogram["edges"], histogram["counts"]
        labels = ["0"] + [f"1e{int(round(_log10(e)))}" for e in edges[1:]]
        values = [histogram.get("zeros", 0)] + counts
        fig, ax = self.plt.subplots(figsize=(5.2, 2.6), dpi=100)
        ax.bar(range(len(values)), values, color="#3b6ea8")
        ax.set_xticks(range(len(values)), labels, rotation=60, fontsize=7)
        ax.set_yscale("symlog")
        ax.set_xlabel("|onnx - source| up to", fontsize=8)
        ax.set_ylabel("elements", fontsize=8)
        ax.set_title(title, fontsize=9)
        return self._encode(fig)

    def latency(self, series: list[tuple[str, list[float]]], title: str) -> str | None:
        if self.plt is None:
            return None
        series = [(name, values) for name, values in series if values]
        fig, ax = self.plt.subplots(figsize=(5.2, 0.6 + 0.45 * len(series)), dpi=100)
        ax.boxplot([values for _, values in series], vert=False, widths=0.6,
                   tick_labels=[name for name, _ in series])
        ax.set_xscale("log")
        ax.set_xlabel("ms per call", fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=8)
        return self._encode(fig)

    def _encode(self, fig) -> str:
        buffer = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buffer, format="png")
        self.plt.close(fig)
        return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _worst_histograms(v: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """One histogram per output: the counts of every batch added together."""
    merged: dict[str, dict[str, Any]] = {}
    for batch in v.get("batches", []):
        for out in batch["outputs"]:
            histogram = out.get("histogram")
            if not histogram:
                continue
            if out["name"] not in merged:
                merged[out["name"]] = {"edges": histogram["edges"],
                                       "counts": list(histogram["counts"]),
                                       "zeros": histogram.get("zeros", 0)}
            else:
                into = merged[out["name"]]
                into["counts"] = [a + b for a, b in zip(into["counts"], histogram["counts"])]
                into["zeros"] += histogram.get("zeros", 0)
    return merged


# ----------------------------------------------------------------------------- helpers


def _log10(value: float) -> float:
    import math

    return math.log10(value)


def _e(value: Any) -> str:
    return html.escape(str(value))


def _badge(status: str) -> str:
    text, css = _STATUS.get(status, (status, "skip"))
    return f"<span class='badge {css}'>{_e(text)}</span>"


def _figure(data_uri: str, caption: str) -> str:
    return (f"<figure><img alt='{_e(caption)}' src='{data_uri}'>"
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def _table(header: list[str], rows: list[list[str]], numeric: set[int] = frozenset()) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td class='num'>{c}</td>" if i in numeric else f"<td>{c}</td>"
                         for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
