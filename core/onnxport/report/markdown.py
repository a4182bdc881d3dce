"""report.md: the run's summary as Markdown tables, to paste into a pull request."""

from __future__ import annotations

from typing import Any

from onnxport.report.build import final_stage, stage_label, worst_outputs
from onnxport.tolerance import from_json
from onnxport.report.formatting import (NOISY_MARK, NOISY_NOTE, budget_text,
                                        candidate_rows, cosine_text, error_text,
                                        human_bytes, ms_text, speedup_text)


def render_markdown(report: dict[str, Any]) -> str:
    source, export = report["source"], report["export"]
    lines = [
        f"### onnxport: `{report['name']}` {report['status'].upper()}",
        "",
        f"{source['framework']} {source['framework_version']} → ONNX opset "
        f"{export['opset']} ({export['backend']}/{export['exporter']}), from "
        f"`{source['origin']}`",
        "",
        _row(["target", "stage", "status", "max |err|", "onnx ms", "speedup", "size",
              "ran on", "note"]),
        _row(["---"] * 9),
    ]
    outputs, noisy = [], False
    for name, target in report["targets"].items():
        for stage in target["stages"]:
            v = stage.get("verification") or {}
            latency = v.get("latency_ms") or {}
            onnx_ms, speedup = latency.get("onnx"), speedup_text(latency)
            noisy = noisy or speedup.endswith(NOISY_MARK)
            ran_on = "/".join(p.replace("ExecutionProvider", "")
                              for p in v.get("providers", [])) or "-"
            status = stage_label(stage)
            lines.append(_row([name, stage["stage"], status,
                               error_text(v.get("max_abs")), ms_text(onnx_ms), speedup,
                               human_bytes(stage.get("size_bytes")), ran_on,
                               stage.get("reason") or v.get("problem", "")]))
        outputs += _worst_outputs(name, final_stage(target).get("verification") or {})
    if noisy:
        lines += ["", NOISY_NOTE]
    header, candidates = candidate_rows(report)
    if candidates:  # the figures the choice was made on (1 thread, side by side)
        lines += ["", "**Candidates**", "", _row(header), _row(["---"] * len(header)),
                  *(_row(r) for r in candidates)]
    lines += ["", _row(["target", "output", "max abs", "mean abs", "cosine", "argmax",
                        "budget"]), _row(["---"] * 7), *outputs]
    warnings = [f"- {name}: {w}" for name, t in report["targets"].items()
                for w in t.get("warnings", [])]
    warnings += [f"- export: {w}" for w in export.get("warnings", [])]
    if warnings:
        lines += ["", "**Warnings**", "", *warnings]
    versions = report["versions"]
    lines += ["", f"<sub>onnxport {versions.get('onnxport')} · "
                  + " · ".join(f"{k} {versions[k]}" for k in ("torch", "tensorflow",
                                                              "onnxruntime")
                               if k in versions)
              + f" · {report['machine']['cpu']} · {report['created']}</sub>", ""]
    return "\n".join(lines)


def _worst_outputs(target: str, verification: dict[str, Any]) -> list[str]:
    rows = []
    for name, out in worst_outputs(verification).items():
        agreement = out.get("argmax_agreement")
        rows.append(_row([target, name, error_text(out["max_abs"]),
                          error_text(out["mean_abs"]), cosine_text(out["cosine"]),
                          "-" if agreement is None else f"{agreement:.0%}",
                          budget_text(from_json(out["tolerance"]))]))
    return rows


def _row(cells: list[Any]) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") if c != "---" else c
                             for c in cells) + " |"
