"""The one page of a fleet: `fleet.json` for machines, `fleet.md` and `index.html` for
people, one row per model and target: status, shipped stage, size, latency, max error,
time taken, the cause of a failure, and a link to the model's own report."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from onnxport.artifact.writing import write_json
from onnxport.fleet.running import FleetResult, FleetRow
from onnxport.report.build import final_stage
from onnxport.report.formatting import error_text, human_bytes, ms_text, table

FORMAT = "onnxport-fleet/1"


def fleet_json(result: FleetResult) -> dict[str, Any]:
    return {"format": FORMAT, "fleet": str(result.fleet), "destination": result.destination,
            "executor": result.executor, "jobs": result.jobs, "started": result.started,
            "seconds": round(result.seconds, 3), "passed": result.passed,
            "counts": result.counts(), "rows": [_flat(row) for row in result.rows],
            "models": [row.to_json() for row in result.rows]}


def _flat(row: FleetRow) -> list[dict[str, Any]]:
    """The row's figures per target (one entry with target None when none ran)."""
    outcome = row.outcome
    report = outcome.report if outcome else None
    base = {"model": row.name, "state": row.state,
            "seconds": round(outcome.seconds, 2) if outcome else None,
            "peak_rss_bytes": outcome.peak_rss_bytes if outcome else None,
            "cause": "" if row.state in ("passed", "skipped") else
            (outcome.one_line() if outcome else row.reason),
            "report": _link(row)}
    if not report:
        return [{**base, "target": None}]
    entries = []
    for name, target in report["targets"].items():
        stage = final_stage(target)
        verification = stage.get("verification") or {}
        entries.append({**base, "target": name, "target_status": target["status"],
                        "shipped": stage["stage"] if target["status"] == "passed" else None,
                        "size_bytes": stage.get("size_bytes"),
                        "onnx_ms": (verification.get("latency_ms") or {}).get("onnx"),
                        "max_abs": verification.get("max_abs")})
    return entries


def _link(row: FleetRow) -> str | None:
    if not row.location:
        return None
    if "://" in row.location:
        return row.location
    return f"{Path(row.location).name}/report.html"


def fleet_table(result: FleetResult, markdown: bool = False) -> str:
    header = ["model", "target", "state", "shipped", "size", "onnx ms", "max|err|", "time s",
              "peak MB", "cause"]
    rows = []
    for row in result.rows:
        for entry in _flat(row):
            rows.append([entry["model"], entry["target"] or "-", entry["state"],
                         entry.get("shipped") or "-", human_bytes(entry.get("size_bytes")),
                         ms_text(entry.get("onnx_ms")), error_text(entry.get("max_abs")),
                         "-" if entry["seconds"] is None else f"{entry['seconds']:.1f}",
                         _mb(entry.get("peak_rss_bytes")), (entry["cause"] or "")[:200]])
    if not markdown:
        return table(header, rows)
    lines = ["| " + " | ".join(h.replace("|", "\\|") for h in header) + " |",
             "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _mb(value: int | None) -> str:
    return "-" if not value else f"{value / 2**20:.0f}"


def summary_line(result: FleetResult) -> str:
    counts = result.counts()
    return (f"fleet {result.fleet.name}: {counts['passed']} passed, {counts['failed']} "
            f"failed, {counts['skipped']} skipped (unchanged) of {len(result.rows)} "
            f"models in {result.seconds:.1f} s with the {result.executor} executor")


def write_fleet_report(result: FleetResult, directory: Path) -> list[Path]:
    """fleet.json, fleet.md and index.html in `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_json(directory / "fleet.json", fleet_json(result))
    (directory / "fleet.md").write_text(
        f"# Fleet {result.fleet.name}\n\n{summary_line(result)}\n\n"
        + fleet_table(result, markdown=True) + "\n")
    (directory / "index.html").write_text(_html(result))
    return [directory / name for name in ("fleet.json", "fleet.md", "index.html")]


def _html(result: FleetResult) -> str:
    e = html.escape
    body = []
    for row in result.rows:
        for entry in _flat(row):
            link = entry["report"]
            name = (f"<a href='{e(link)}'>{e(entry['model'])}</a>" if link else
                    e(entry["model"]))
            css = {"passed": "pass", "skipped": "skip", "failed": "fail"}.get(entry["state"],
                                                                              "")
            body.append(
                f"<tr><td>{name}</td><td>{e(entry['target'] or '-')}</td>"
                f"<td class='{css}'>{e(entry['state'])}</td>"
                f"<td>{e(entry.get('shipped') or '-')}</td>"
                f"<td class='n'>{e(human_bytes(entry.get('size_bytes')))}</td>"
                f"<td class='n'>{e(ms_text(entry.get('onnx_ms')))}</td>"
                f"<td class='n'>{e(error_text(entry.get('max_abs')))}</td>"
                f"<td class='n'>{'-' if entry['seconds'] is None else entry['seconds']}</td>"
                f"<td class='n'>{_mb(entry.get('peak_rss_bytes'))}</td>"
                f"<td>{e(entry['cause'] or '')}</td></tr>")
    return f"""<!doctype html><html><head><meta charset='utf-8'>
<title>onnxport fleet {e(result.fleet.name)}</title><style>
body{{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}}
table{{border-collapse:collapse}}td,th{{padding:4px 8px;border-bottom:1px solid #ddd;
text-align:left}}.n{{text-align:right}}.pass{{color:#176f2c}}.fail{{color:#b00020;
font-weight:bold}}.skip{{color:#666}}</style></head><body>
<h1>Fleet {e(result.fleet.name)}</h1><p>{e(summary_line(result))}</p>
<table><tr><th>model</th><th>target</th><th>state</th><th>shipped</th><th>size</th>
<th>onnx ms</th><th>max|err|</th><th>time s</th><th>peak MB</th><th>cause</th></tr>
{''.join(body)}</table></body></html>
"""
