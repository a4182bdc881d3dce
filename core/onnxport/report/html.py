"""report.html: the run a person reads, rendered from report.json alone (and, after
`convert --diagnose`, the diagnosis.json beside it).

One self-contained file (inline CSS and inline SVG plots; no script, nothing fetched).
It answers in this order:

1. what failed and why, when something did: the failing target and stage, the outputs
   out of budget, and where the model goes wrong (the --diagnose result) or the command
   that finds it;
2. which model shipped for each target (marked), with its error against its budget,
   speed, size and where it ran, and the decisions taken on the way ("kept fp32:
   INT8 slower here" is a decision, not a warning);
3. warnings that need a person;
4. the details, collapsed (<details>): every stage of every target (a failing stage
   first), each output at each batch, |error| histograms and latency box plots where they
   inform, the inputs used and the environment.

Plots are SVG written by `report.svg`: no plotting library is needed.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

from onnxport.report import svg
from onnxport.report.build import final_stage, is_decision, kept_label, worst_outputs
from onnxport.report.formatting import (NOISY_NOTE, budget_text, cosine_text, error_text,
                                        human_bytes, ms_text, speedup_text)
from onnxport.tolerance import from_json

DIAGNOSIS = "diagnosis.json"

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5rem auto;
max-width:1100px;color:#1d2733;padding:0 1rem}
h1{font-size:1.5rem;margin:0 0 .3rem}h2{font-size:1.2rem;margin:1.6rem 0 .5rem;
border-bottom:1px solid #d5dbe3;padding-bottom:.2rem}h3{font-size:1.02rem;margin:1rem 0 .4rem}
table{border-collapse:collapse;margin:.4rem 0 .8rem;font-size:13px}
th,td{border:1px solid #d5dbe3;padding:.25rem .55rem;text-align:left;vertical-align:top}
th{background:#f1f4f8}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.failed td{background:#fff5f5}
.badge{display:inline-block;padding:.1rem .55rem;border-radius:.7rem;font-weight:600;
font-size:12px;white-space:nowrap}.pass{background:#d9f2df;color:#14632b}
.fail{background:#fbdada;color:#8f1a1a}.skip{background:#eceff3;color:#4b5563}
.warn{background:#fff1cc;color:#7a5600}.decision{background:#e3ecf7;color:#1f4b7a}
.shipped{background:#14632b;color:#fff}
.big{font-size:1rem;padding:.25rem .8rem}.muted{color:#5d6b7b}
.failure{border:2px solid #e5a3a3;border-radius:6px;padding:.2rem 1rem .6rem;margin:.6rem 0;
background:#fffafa}.failure h3{margin-top:.6rem}
.diagnosis{border-left:4px solid #b4481f;padding:.1rem .8rem;margin:.6rem 0;background:#fff}
.todo{background:#f1f4f8;padding:.4rem .6rem;border-radius:4px}
details{border:1px solid #d5dbe3;border-radius:6px;margin:.5rem 0;padding:0 .8rem}
details[open]{padding-bottom:.6rem}summary{cursor:pointer;padding:.45rem 0;font-weight:600}
summary .muted{font-weight:400}
.plots{display:flex;flex-wrap:wrap;gap:1rem;align-items:flex-start}.plots figure{margin:0}
.plots svg{border:1px solid #e3e8ee;background:#fff}figcaption{font-size:12px;color:#5d6b7b}
ul{margin:.3rem 0;padding-left:1.3rem}li{margin:.15rem 0}
code{background:#f1f4f8;padding:0 .25rem;border-radius:3px}
pre{background:#f6f8fa;padding:.6rem;overflow-x:auto;font-size:12px;line-height:1.35}
"""

_STATUS = {"ok": ("PASS", "pass"), "passed": ("PASSED", "pass"), "failed": ("FAIL", "fail"),
           "rejected": ("REJECTED", "warn"), "skipped": ("skipped", "skip")}

# A pass whose model verified but was not kept because it did not pay off here (INT8 in
# mode auto: slower, not faster enough, not smaller) decided, it did not fail: the page
# says "kept fp32: <reason>" (for another pass: "kept without PASS: <reason>").
_KEPT = re.compile(r",? kept (fp32|the previous model)\b.*$")


def render_html(report: dict[str, Any],
                diagnoses: list[dict[str, Any]] | None = None) -> str:
    """The page for `report` (report.json), with `diagnoses` (diagnosis.json) if any."""
    source, export = report["source"], report["export"]
    passed = report["status"] == "passed"
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width,initial-scale=1'>",
        f"<title>onnxport report: {_e(report['name'])}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{_e(report['name'])} <span class='badge big {'pass' if passed else 'fail'}'>"
        f"{report['status'].upper()}</span></h1>",
        f"<p class='muted'>{_e(source['framework'])} {_e(source['framework_version'])} "
        f"&rarr; ONNX opset {_e(export['opset'])} with {_e(export['backend'])}/"
        f"{_e(export['exporter'])}{_routes_text(export)} &middot; "
        f"<code>{_e(source['origin'])}</code> &middot; {_e(report['created'])}</p>",
    ]
    if not passed:
        parts.append(_failures_section(report, diagnoses or []))
    parts += ["<h2 id='summary'>Shipped models</h2>", _shipped_table(report)]
    warnings = _warnings(report)
    if warnings:
        parts += ["<h2 id='warnings'>Warnings</h2>", "<ul class='warnings'>" + "".join(
            f"<li><span class='badge warn'>warning</span> {_e(w)}</li>" for w in warnings)
            + "</ul>"]
    parts.append("<h2 id='details'>Details</h2>")
    for name, target in report["targets"].items():
        parts.append(_target_details(name, target))
    parts += [
        "<details id='inputs'><summary>Inputs used</summary>", _inputs_section(report),
        "</details>",
        "<details id='environment'><summary>Environment</summary>",
        _environment_section(report), "</details>",
        "</body></html>",
    ]
    return "\n".join(parts)


def rewrite_html(directory: Path) -> Path:
    """Render `directory`/report.html again from its report.json and, when there is one,
    the diagnosis.json beside it (`convert --diagnose` writes that after the report)."""
    from onnxport.artifact.reading import REPORT, read_json

    directory = Path(directory)
    report = read_json(directory / REPORT, "report")
    diagnoses = None
    path = directory / DIAGNOSIS
    if path.is_file() and not path.is_symlink():
        loaded = json.loads(path.read_text())
        diagnoses = loaded if isinstance(loaded, list) else [loaded]
    page = directory / "report.html"
    page.write_text(render_html(report, diagnoses))
    return page


# --------------------------------------------------------------------------- failures


def _failures_section(report: dict[str, Any], diagnoses: list[dict[str, Any]]) -> str:
    parts = ["<h2 id='failures'>What failed</h2>"]
    failed = {n: t for n, t in report["targets"].items() if t["status"] != "passed"}
    for name, target in failed.items():
        stage = _failing_stage(target)
        v = stage.get("verification") or {}
        parts.append(f"<div class='failure' id='failed-{_e(name)}'>"
                     f"<h3>Target {_e(name)}: stage {_e(stage['stage'])} "
                     f"{_badge(stage['status'])}</h3>")
        problem = v.get("problem") or stage.get("reason") or "it did not verify"
        parts.append(f"<p><b>Why:</b> {_e(problem)}</p>")
        failing = [c for c in v.get("checks", []) if not c["passed"]]
        if failing:
            parts.append("<ul>" + "".join(f"<li>check <b>{_e(c['name'])}</b>: "
                                          f"{_e(c['detail'])}</li>" for c in failing)
                         + "</ul>")
        outs = {o: out for o, out in worst_outputs(v).items() if not out["passed"]}
        if outs:
            parts.append(_worst_table(outs))
        found = [d for d in diagnoses if d.get("target") in (name, None)]
        if found:
            parts += [_diagnosis_block(d) for d in found]
        else:
            parts.append("<p class='todo'>Where it goes wrong: <code>onnxport diagnose "
                         "DIR.failed</code> (or convert again with <code>--diagnose</code>) "
                         "finds the first node whose output diverges.</p>")
        parts.append("</div>")
    if not failed:
        parts.append("<p>No target failed; the run failed before a target was verified."
                     "</p>")
    return "\n".join(parts)


def _failing_stage(target: dict[str, Any]) -> dict[str, Any]:
    stages = target["stages"]
    return next((s for s in stages if s["status"] == "failed"), final_stage(target))


def _diagnosis_block(diagnosis: dict[str, Any]) -> str:
    """The --diagnose result: the first diverging node or layer and what to do, then the
    whole diagnosis as the terminal prints it."""
    text = _diagnosis_text(diagnosis)
    lines = text.splitlines()
    headline = next((line for line in lines if line.startswith("first divergence:")
                     or line.startswith("no compared tensor")), "")
    todo = []
    for index, line in enumerate(lines):
        if line.strip().startswith("what to do:"):
            todo = [line.strip()[len("what to do:"):].strip()]
            for more in lines[index + 1:]:
                if not more.startswith("    ") or not more.strip():
                    break
                todo.append(more.strip())
            break
    first = diagnosis.get("first_divergence") or {}
    comparison = first.get("comparison") or {}
    parts = ["<div class='diagnosis'><h3>Where it goes wrong (--diagnose)</h3>"]
    if diagnosis.get("problem"):
        parts.append(f"<p>{_e(diagnosis['problem'])}</p>")
    if headline:
        parts.append(f"<p><b>{_e(headline[0].upper() + headline[1:])}</b></p>")
    if first:
        node = first.get("node") or {}
        inputs = "; ".join(f"{i['name']}: {i['dtype']}{i['shape']}"
                           for i in node.get("inputs", []))
        parts.append("<ul>"
                     f"<li>output <code>{_e(first.get('tensor'))}</code>: "
                     f"{_e(comparison.get('problem', ''))}</li>"
                     f"<li>inputs {_e(inputs or 'none')}</li>"
                     f"<li>compared with {_e(diagnosis.get('reference', ''))}</li></ul>")
    if todo:
        parts.append(f"<p class='todo'><b>What to do:</b> {_e(' '.join(todo))}</p>")
    parts.append("<details><summary>The whole diagnosis</summary>"
                 f"<pre>{_e(text)}</pre></details></div>")
    return "".join(parts)


def _diagnosis_text(data: dict[str, Any]) -> str:
    """The diagnosis as `onnxport diagnose` prints it, from its JSON."""
    try:
        from onnxport.diagnose.findings import Diagnosis, Finding, NodeInfo
        from onnxport.diagnose.text import diagnosis_text
        from onnxport.conversion import OutputComparison

        def node(d: dict[str, Any] | None) -> NodeInfo | None:
            if not d:
                return None
            return NodeInfo(d["name"], d["op_type"],
                            [(i["name"], i["shape"], i["dtype"]) for i in d["inputs"]],
                            d["outputs"])

        def comparison(d: dict[str, Any]) -> OutputComparison:
            values = {k: _number(v) if k in ("max_abs", "mean_abs", "max_rel", "cosine")
                      else v for k, v in d.items()}
            values["tolerance"] = from_json(d["tolerance"])
            return OutputComparison(**values)

        findings = [Finding(tensor=f["tensor"], reference_tensor=f["reference_tensor"],
                            node=node(f["node"]), comparison=comparison(f["comparison"]),
                            matched_by=f.get("matched_by", "name"),
                            candidate_node=node(f.get("candidate_node")),
                            scope=f.get("scope"), description=f.get("description", ""),
                            layer_nodes=f.get("layer_nodes", []),
                            reshaped=f.get("reshaped", False))
                    for f in data.get("findings", [])]
        inputs = data.get("inputs") or {}
        diagnosis = Diagnosis(
            kind=data["kind"], stage=data["stage"], target=data.get("target"),
            candidate=data.get("candidate", ""), reference=data.get("reference", ""),
            label=inputs.get("label", ""), inputs=inputs.get("tensors", {}),
            tolerance=from_json(data["tolerance"]), findings=findings,
            outputs_diverge=data.get("outputs_diverge", True),
            counts=data.get("counts", {}), notes=data.get("notes", []),
            problem=data.get("problem", ""), kept=data.get("kept"),
            other_exporters=data.get("other_exporters", []))
        return diagnosis_text(diagnosis)
    except Exception:  # a diagnosis.json of another version: show what it says
        return json.dumps({k: v for k, v in data.items() if k != "findings"}, indent=2,
                          default=str)[:20000]


def _number(value: Any) -> float:
    return float(value) if value is not None else float("nan")


# --------------------------------------------------------------------------- shipped


def _shipped_table(report: dict[str, Any]) -> str:
    """One row per target: the model it ships (marked), failing targets first."""
    targets = sorted(report["targets"].items(), key=lambda item: item[1]["status"] == "passed")
    rows = []
    for name, target in targets:
        ok = target["status"] == "passed"
        stage = final_stage(target) if ok else _failing_stage(target)
        v = stage.get("verification") or {}
        latency = v.get("latency_ms") or {}
        speedup = speedup_text(latency)
        speed = ms_text(latency.get("onnx")) + (f" ({speedup})" if speedup != "-" else "")
        budgets = sorted({budget_text(from_json(o["tolerance"]))
                          for o in worst_outputs(v).values()})
        shipped = (f"<span class='badge shipped'>&#10003; shipped</span> "
                   f"<code>{_e(target['model'])}</code> <span class='muted'>from "
                   f"{_e(stage['stage'])}</span>" if ok else
                   "<span class='badge fail'>nothing shipped</span> "
                   f"<span class='muted'>{_e(stage['stage'])} failed</span>")
        rows.append(("" if ok else " class='failed'", [
            f"<b>{_e(name)}</b>", _badge(target["status"]), shipped,
            error_text(v.get("max_abs")), _e("; ".join(budgets) or "-"), speed,
            human_bytes(stage.get("size_bytes")), _e(_providers(v)),
            _decisions(target)]))
    header = ["target", "status", "model", "max |error|", "budget", "onnx ms (speedup)",
              "size", "ran on", "decisions"]
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(f"<tr{css}>" + "".join(
        f"<td class='num'>{c}</td>" if i in (3, 5, 6) else f"<td>{c}</td>"
        for i, c in enumerate(cells)) + "</tr>" for css, cells in rows)
    return (f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
            "<p class='muted'>max |error|: the worst of every output at every batch checked "
            "against the source; onnx ms: median at the first batch, timed interleaved "
            f"with the source for the speedup ({_e(NOISY_NOTE)}).</p>")


def _decisions(target: dict[str, Any]) -> str:
    """Why this model: the candidates timed side by side (the shipped one first), or
    each pass's own decision; a deliberate fp32 is a decision, not a rejection."""
    candidates = [c for c in target.get("candidates") or []
                  if c.get("verdict") in ("shipped", "lost")]
    winner = next((c for c in candidates if c["verdict"] == "shipped"), None)
    items = []
    for candidate in sorted(candidates, key=lambda c: c is not winner):
        label = "shipped" if candidate is winner else "not shipped"
        if candidate is not winner and winner is not None and _int8(candidate) and \
                not _int8(winner):
            label = "kept fp32"
        items.append(f"<span class='badge decision'>{label}</span> "
                     f"{_e(candidate.get('name', ''))}: {_e(candidate.get('reason', ''))}")
    for stage in target["stages"]:
        reason = stage.get("reason") or ""
        if is_decision(stage):
            items.append(f"<span class='badge decision'>{_e(kept_label(stage))}</span> "
                         f"{_e(stage['stage'])}: {_e(_kept_reason(reason))}")
        elif stage["status"] == "rejected":
            items.append(f"{_badge('rejected')} {_e(stage['stage'])}: {_e(reason)}")
        elif candidates:
            continue  # the candidates above say why
        elif stage["status"] == "ok" and re.search(r",? kept INT8\b", reason):
            items.append(f"<span class='badge decision'>kept INT8</span> "
                         f"{_e(stage['stage'])}: "
                         f"{_e(re.sub(r',? kept INT8', '', reason).strip())}")
        elif stage["status"] == "ok" and reason:
            items.append(f"{_e(stage['stage'])}: {_e(reason)}")
    return "<br>".join(items) or "<span class='muted'>-</span>"


def _int8(candidate: dict[str, Any]) -> bool:
    return any("quant" in s.lower() or "int8" in s.lower()
               for s in candidate.get("stages", []))


def _candidates_table(candidates: list[dict[str, Any]]) -> str:
    """The complete models the target could ship, timed side by side."""
    rows = []
    for c in sorted(candidates, key=lambda c: c.get("verdict") != "shipped"):
        latency = ", ".join(f"{ms_text((v or {}).get('p50'))} at batch {b}"
                            for b, v in (c.get("latency_ms") or {}).items()) or "-"
        verdict = c.get("verdict", "")
        badge = ("<span class='badge shipped'>&#10003; shipped</span>" if verdict == "shipped"
                 else _badge("failed") if verdict == "failed" else
                 f"<span class='badge skip'>{_e(verdict or '-')}</span>")
        rows.append([_e(c.get("name", "")), badge, error_text(c.get("max_abs")),
                     human_bytes(c.get("size_bytes")), _e(latency), _e(c.get("reason", ""))])
    return "<h3>Candidates</h3>" + _table(
        ["candidate", "verdict", "max |error|", "size", "p50 ms", "why"], rows,
        numeric={2, 3})


def _kept_reason(reason: str) -> str:
    return _KEPT.sub("", reason).strip().rstrip(":,;")


def _warnings(report: dict[str, Any]) -> list[str]:
    """Warnings that need a person: not the decisions the page shows as such."""
    said = []
    for name, target in report["targets"].items():
        decided = [f"{s['stage']}: {s.get('reason')}" for s in target["stages"]
                   if is_decision(s)]
        for warning in target.get("warnings", []):
            if any(warning.startswith(d) for d in decided) or _is_route(warning):
                continue
            said.append(f"{name}: {warning}")
    said += [f"export: {w}" for w in report["export"].get("warnings", [])]
    return list(dict.fromkeys(said))


def _is_route(warning: str) -> bool:
    return warning.startswith("export: the ") and " instead" in warning


def _routes_text(export: dict[str, Any]) -> str:
    routes = (export.get("details") or {}).get("routes") or []
    tried = [r for r in routes if r.get("failed")]
    if not tried:
        return ""
    why = "; ".join(f"{r['exporter']} {'failed' if r['failed'] == 'export' else 'failed verification'}"
                    f": {r.get('reason', '')}" for r in tried)
    return f" (<span class='badge decision'>exporter</span> {_e(why)})"


# --------------------------------------------------------------------------- details


def _target_details(name: str, target: dict[str, Any]) -> str:
    stages = sorted(target["stages"], key=lambda s: s["status"] != "failed")
    shipped = final_stage(target) if target["status"] == "passed" else None
    summary = ", ".join(f"{s['stage']} " + (kept_label(s) if is_decision(s) else
                                             _STATUS.get(s["status"], (s["status"],))[0])
                        for s in target["stages"])
    parts = [f"<details id='target-{_e(name)}'><summary>Target {_e(name)} "
             f"{_badge(target['status'])} <span class='muted'>{_e(summary)}</span></summary>",
             _stage_table(target, stages, shipped)]
    if target.get("candidates"):
        parts.append(_candidates_table(target["candidates"]))
    series: list[tuple[str, list[float]]] = []
    for stage in stages:
        v = stage.get("verification")
        mark = " <span class='badge shipped'>&#10003; shipped</span>" if stage is shipped \
            else ""
        parts.append(f"<h3>{_e(stage['stage'])} {_stage_badge(stage)}{mark}</h3>")
        if stage.get("reason"):
            reason = _kept_reason(stage["reason"]) if is_decision(stage) else stage["reason"]
            parts.append(f"<p class='muted'>{_e(reason)}</p>")
        if not v:
            continue
        parts.append(_checks(v))
        parts.append(_outputs_table(v))
        parts.append(_histograms(name, stage, v))
        latency = v.get("latency_ms") or {}
        if latency.get("onnx_samples"):
            if not series and latency.get("source_samples"):
                series.append(("source", latency["source_samples"]))
            series.append((stage["stage"], latency["onnx_samples"]))
    plot = svg.latency_boxes(series, f"{name}: ms per call at the first batch")
    parts.append("<h3>Latency</h3>")
    if plot:
        parts.append("<div class='plots'>" + _figure(
            plot, "ms per call at the first batch, the source and each ONNX stage") + "</div>")
    else:
        parts.append("<p class='muted'>No latency distribution: no timed runs were "
                     "recorded (--latency-runs 0) or too few to draw.</p>")
    parts.append("</details>")
    return "\n".join(parts)


def _stage_table(target: dict[str, Any], stages: list[dict[str, Any]],
                 shipped: dict[str, Any] | None) -> str:
    rows = []
    for stage in stages:
        v = stage.get("verification") or {}
        latency = v.get("latency_ms") or {}
        rows.append([
            _e(stage["stage"]) + (" <span class='badge shipped'>&#10003;</span>"
                                  if stage is shipped else ""),
            _stage_badge(stage), error_text(v.get("max_abs")), ms_text(latency.get("onnx")),
            ms_text(latency.get("source")), human_bytes(stage.get("size_bytes")),
            _e(_providers(v) or "-"),
            _e((_kept_reason(stage["reason"]) if is_decision(stage) else stage.get("reason"))
               or ("" if v.get("passed", True) else v.get("problem", ""))),
        ])
    return _table(["stage", "status", "max |error|", "onnx ms", "source ms", "size",
                   "ran on", "note"], rows, numeric={2, 3, 4, 5})


def _histograms(target: str, stage: dict[str, Any], v: dict[str, Any]) -> str:
    figures, words = [], []
    for output, histogram in _merged_histograms(v).items():
        atol = _atol(v, output)
        plot = svg.error_histogram(histogram, atol,
                                   f"{target} / {stage['stage']} / {output}: |error|")
        if plot:
            figures.append(_figure(plot, f"|error| of {output} vs the source "
                                         f"({stage['stage']}, all batches)"))
        else:
            words.append(f"<li>|error| of <code>{_e(output)}</code>: "
                         f"{_e(svg.histogram_words(histogram))}</li>")
    out = ""
    if figures:
        out += "<div class='plots'>" + "".join(figures) + "</div>"
    if words:
        out += "<ul class='muted'>" + "".join(words) + "</ul>"
    return out


def _atol(v: dict[str, Any], output: str) -> float | None:
    for batch in v.get("batches", []):
        for out in batch["outputs"]:
            if out["name"] == output:
                atol = from_json(out["tolerance"]).atol
                return atol if atol != float("inf") else None
    return None


def _merged_histograms(v: dict[str, Any]) -> dict[str, dict[str, Any]]:
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


def _checks(v: dict[str, Any]) -> str:
    """A failing check in full; the passing ones in one line (details on hover)."""
    checks = v.get("checks", [])
    failing = "".join(f"<li>{_badge('failed')} <b>{_e(c['name'])}</b>: {_e(c['detail'])}"
                      "</li>" for c in checks if not c["passed"])
    passing = ", ".join(f"<span title='{_e(c['detail'])}'>{_e(c['name'])}</span>"
                        for c in checks if c["passed"])
    problem = (f"<p><span class='badge fail'>problem</span> {_e(v['problem'])}</p>"
               if v.get("problem") else "")
    return (problem + (f"<ul>{failing}</ul>" if failing else "")
            + (f"<p class='muted'>{_badge('ok')} checks: {passing}</p>" if passing else ""))


def _outputs_table(v: dict[str, Any]) -> str:
    rows = []
    batches = sorted(v.get("batches", []), key=lambda b: b.get("passed", True))
    for batch in batches:
        for out in sorted(batch["outputs"], key=lambda o: o["passed"]):
            agreement = out.get("argmax_agreement")
            rows.append([
                _e(batch["label"]), _e(out["name"]),
                _badge("ok" if out["passed"] else "failed"),
                error_text(out["max_abs"]), error_text(out["mean_abs"]),
                error_text(out["max_rel"]), cosine_text(out["cosine"]),
                "-" if agreement is None else f"{agreement:.0%}"
                + ("" if out.get("classifier") else " (info)"),
                _e(budget_text(from_json(out["tolerance"]))),
                _e(out.get("problem", "")),
            ])
    return _table(["batch", "output", "", "max abs", "mean abs", "max rel", "cosine",
                   "argmax", "budget", "problem"], rows, numeric={3, 4, 5, 6})


def _worst_table(outputs: dict[str, dict[str, Any]]) -> str:
    rows = [[_e(name), error_text(out["max_abs"]), error_text(out["mean_abs"]),
             cosine_text(out["cosine"]), _e(budget_text(from_json(out["tolerance"]))),
             _e(out.get("problem", ""))] for name, out in outputs.items()]
    return _table(["output", "max abs", "mean abs", "cosine", "budget", "problem"], rows,
                  numeric={1, 2, 3})


def _inputs_section(report: dict[str, Any]) -> str:
    settings = report["verification_settings"]
    head = (f"<p>Seed {settings['seed']}; batch sizes "
            f"{_e(settings['batch_sizes'] or 'default (1, 3)')}; ranges "
            f"{_e(settings['input_ranges'] or 'default [-1, 1], integers [0, 10)')}; "
            f"data {_e(settings['data'] or 'seeded random')}. Rule: "
            f"{_e(settings['rule'])}.</p>")
    first = next(iter(report["targets"].values()), None)
    verification = ((first or {}).get("stages") or [{}])[0].get("verification") or {}
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


# --------------------------------------------------------------------------- helpers


def _providers(v: dict[str, Any]) -> str:
    return "/".join(p.replace("ExecutionProvider", "") for p in v.get("providers", []))


def _e(value: Any) -> str:
    return html.escape(str(value))


def _badge(status: str) -> str:
    text, css = _STATUS.get(status, (status, "skip"))
    return f"<span class='badge {css}'>{_e(text)}</span>"


def _stage_badge(stage: dict[str, Any]) -> str:
    if is_decision(stage):
        return f"<span class='badge decision'>{_e(kept_label(stage))}</span>"
    return _badge(stage["status"])


def _figure(svg_text: str, caption: str) -> str:
    return f"<figure>{svg_text}<figcaption>{_e(caption)}</figcaption></figure>"


def _table(header: list[str], rows: list[list[str]], numeric: set[int] = frozenset()) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td class='num'>{c}</td>" if i in numeric else f"<td>{c}</td>"
                         for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
