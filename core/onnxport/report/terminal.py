"""Plain-text tables for the terminal: compact, aligned, under 100 columns."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

from onnxport.report.formatting import (NOISY_MARK, NOISY_NOTE, budget_text,
                                        candidate_rows, cosine_text, error_text,
                                        human_bytes, ms_text, speedup_text, table)
from onnxport.report.build import final_stage, stage_label, worst_outputs
from onnxport.tolerance import from_json

if TYPE_CHECKING:
    from onnxport.artifact.modelinfo import ModelInfo
    from onnxport.flow.reverify import ArtifactCheck
    from onnxport.flow.verification import Verification


WIDTH = 100


def conversion_summary(report: dict[str, Any], output: str | Path | None,
                       warnings: bool = True) -> str:
    """One row per target and stage, then each shipped model's outputs, then warnings
    (left out for `-q`); rendered from report.json alone, so it reads the same for a
    conversion that ran in this process and one that ran in a worker."""
    source, export = report["source"], report["export"]
    targets = report["targets"]
    source_ms = next((s["verification"]["latency_ms"].get("source")
                      for t in targets.values() for s in t["stages"][:1]
                      if s.get("verification") and s["verification"].get("latency_ms")),
                     None)
    models = [t["model"] for t in targets.values()]
    produced = (f"ONNX opset {export['opset']}" if all(m.endswith(".onnx") for m in models)
                else Path(models[0]).suffix.lstrip(".").upper() if models else "ONNX")
    head = (f"{report['name']}: {source['framework']} {source['framework_version']} -> "
            f"{produced} ({source['backend']}/{export['exporter']})"
            + (f"; source {ms_text(source_ms)} ms at the first batch" if source_ms else ""))
    rows = [_stage_row(name, stage)
            for name, target in targets.items() for stage in target["stages"]]
    header = ["target", "stage", "status", "max|err|", "onnx ms", "speedup", "size",
              "ran on", "note"]
    parts = [head, "", _fit(table(header, rows))]
    if any(row[5].endswith(NOISY_MARK) for row in rows):
        parts.append(textwrap.fill(NOISY_NOTE, WIDTH, subsequent_indent="  "))
    chosen = candidates_table(report)
    if chosen:
        parts += ["", chosen]
    parts += ["", outputs_table(report)]
    budgets = [_budget_line(name, t["latency_budget"]) for name, t in report["targets"].items()
               if t.get("latency_budget")]
    if budgets:
        parts += ["", *budgets]
    said = [f"{name}: {w}" for name, t in targets.items() for w in t["warnings"]]
    said += [f"export: {w}" for w in export.get("warnings", [])]
    if said and warnings:
        parts += ["", "warnings:", *(textwrap.fill(w, WIDTH, initial_indent="  ",
                                                   subsequent_indent="    ",
                                                   break_on_hyphens=False)
                                     for w in said)]
    for name, target in targets.items():
        verification = final_stage(target).get("verification") or {}
        if target["status"] != "passed":
            parts += ["", f"{name}: FAILED: {verification.get('problem', '')}"]
    if output is not None:
        state = "wrote" if report["status"] == "passed" else "kept the failed candidate in"
        parts += ["", f"{state} {output}"]
    return "\n".join(parts)


def _stage_row(target: str, stage: dict[str, Any]) -> list[str]:
    v = stage.get("verification")
    status = stage_label(stage)
    if v is None:
        return [target, stage["stage"], status, "-", "-", "-", "-", "-", stage["reason"]]
    latency = v.get("latency_ms") or {}
    onnx_ms, speedup = latency.get("onnx"), speedup_text(latency)
    ran_on = "/".join(p.replace("ExecutionProvider", "") for p in v["providers"]) or "-"
    note = stage["reason"] or ("" if v["passed"] else v["problem"])
    return [target, stage["stage"], status, error_text(v.get("max_abs")), ms_text(onnx_ms),
            speedup, human_bytes(stage.get("size_bytes")), ran_on, note]


def _fit(text: str) -> str:
    return "\n".join(line if len(line) <= WIDTH else line[:WIDTH - 3] + "..."
                     for line in text.splitlines())


def _budget_line(target: str, b: dict[str, Any]) -> str:
    verdict = "met" if b["met"] else "MISSED"
    return (f"{target}: latency budget {b['budget_ms']:g} ms p99 at batch {b['batch']}: "
            f"{verdict} (p99 {b['p99_ms']:.3g} ms, p50 {b['p50_ms']:.3g} ms, {b['runs']} "
            f"runs on {b['machine']}, {b['threads']} thread(s))")


def candidates_table(report: dict[str, Any]) -> str:
    """Where a target had several candidate models: each, timed side by side at the
    target's batch sizes, with its verdict and why ("" when no target had a choice)."""
    header, rows = candidate_rows(report)
    return _fit(table(header, rows)) if rows else ""


def outputs_table(report: dict[str, Any]) -> str:
    """Each shipped model's outputs at their worst batch, with the budget that applied."""
    rows = []
    for name, target in report["targets"].items():
        verification = final_stage(target).get("verification") or {}
        for output, out in worst_outputs(verification).items():
            rows.append([name, output, "ok" if out["passed"] else "FAIL",
                         error_text(out["max_abs"]), error_text(out["mean_abs"]),
                         cosine_text(out["cosine"]), _agreement_of(out),
                         budget_text(from_json(out["tolerance"]))])
    header = ["target", "output", "", "max abs", "mean abs", "cosine", "argmax", "budget"]
    return _fit(table(header, rows)) if rows else "(no outputs compared)"


def _agreement_of(out: dict[str, Any]) -> str:
    if out.get("argmax_agreement") is None:
        return "-"
    return f"{out['argmax_agreement']:.0%}" + ("" if out["classifier"] else " (info)")


def _agreement(out) -> str:
    if out.argmax_agreement is None:
        return "-"
    return f"{out.argmax_agreement:.0%}" + ("" if out.classifier else " (info)")


def verification_detail(target: str, verification: Verification) -> str:
    """Per output: the worst batch's figures and the tolerance that applied."""
    rows = []
    for name, out in verification.worst_by_output().items():
        rows.append([f"  {name}", "ok" if out.passed else "FAIL", error_text(out.max_abs),
                     error_text(out.mean_abs), f"{out.cosine:.6f}", _agreement(out),
                     budget_text(out.tolerance)])
    lines = [f"{target}: outputs (worst batch)",
             table(["  output", "", "max abs", "mean abs", "cosine", "argmax",
                    "budget"], rows) if rows else "  (no outputs compared)"]
    for check in verification.checks:
        if not check.passed:
            lines.append(f"  check {check.name} failed: {check.detail}")
    if verification.problem and all(c.passed for c in verification.checks):
        lines.append(f"  {verification.problem}")
    return "\n".join(lines)


def artifact_check_summary(checks: list[ArtifactCheck]) -> str:
    parts = []
    for check in checks:
        if check.integrity_problems:
            parts.append(f"{check.target}: FAIL files do not match the manifest: "
                         + "; ".join(check.integrity_problems))
            continue
        v = check.verification
        if v is None:
            parts.append(f"{check.target}: files ok (every sha256 matches the manifest); "
                         f"{check.not_rerun}")
            continue
        parts.append(f"{check.target}: {'PASS' if v.passed else 'FAIL'} "
                     f"(max abs error {error_text(v.max_abs)})")
        parts.append(verification_detail(check.target, v))
    return "\n".join(parts)


def model_summary(info: ModelInfo) -> str:
    ops = ", ".join(f"{op} {n}" for op, n in info.op_histogram.items())
    opsets = ", ".join(f"{d or 'ai.onnx'} {v}" for d, v in info.opsets.items())
    rows = [
        ("file", f"{info.path}  ({human_bytes(info.size_bytes)})"),
        ("producer", info.producer or "-"),
        ("ir version", str(info.ir_version)),
        ("opset", opsets),
        *[("input" if i == 0 else "", t.describe()) for i, t in enumerate(info.inputs)],
        *[("output" if i == 0 else "", t.describe()) for i, t in enumerate(info.outputs)],
        ("parameters", f"{info.parameter_count:,}"),
        ("nodes", str(info.node_count)),
        ("ops", ops or "-"),
    ]
    if info.external_data:
        rows.append(("external data", ", ".join(info.external_data)))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)
