"""A diagnosis in words, for the terminal: the first divergence, what to do, and the
compared tensors around it, under 100 columns."""

from __future__ import annotations

import math
import re
import textwrap

from onnxport.diagnose.findings import Diagnosis, Finding


def diagnosis_text(diagnosis: Diagnosis, show_all: bool = False) -> str:
    from onnxport.report.formatting import budget_text

    where = f"target {diagnosis.target}, " if diagnosis.target else ""
    what = ("a post-processing pass" if diagnosis.kind == "pass" else
            "the model as shipped, after its passes" if diagnosis.stage == "shipped" else
            "the export" if diagnosis.kind == "export" else diagnosis.stage)
    stage = diagnosis.stage
    lines = [f"diagnosis: {where}stage {stage} ({what})"]
    if diagnosis.problem:
        return "\n".join(lines + [f"  {diagnosis.problem}"])
    c = diagnosis.counts
    lines.append(f"  model      {diagnosis.candidate}")
    lines.append(f"  against    {diagnosis.reference}")
    lines.append(f"  inputs     {diagnosis.label}: " + ", ".join(
        f"{n} {d['dtype']}{d['shape']}" for n, d in diagnosis.inputs.items()))
    if diagnosis.kind == "pass":
        lines.append(f"  compared   {c.get('compared', 0)} float tensors in topological "
                     f"order ({c.get('matched', 0)} of {c.get('reference_tensors', 0)} "
                     f"matched, {c.get('renamed', 0)} of them renamed)")
    else:
        lines.append(f"  compared   {c.get('compared', 0)} layer outputs in the order the "
                     f"source ran them ({c.get('layers', 0)} layers found in the ONNX "
                     "graph)")
    whose = "the failing output's" if diagnosis.outputs_diverge else "the output's"
    lines.append(f"  tolerance  {budget_text(diagnosis.tolerance)} ({whose} budget, applied "
                 "to every tensor)")
    first = diagnosis.first
    lines.append("")
    if first is None:
        lines.append("no compared tensor diverges beyond tolerance"
                     + (": the outputs do diverge, so the error arises in tensors that "
                        "could not be compared (see the notes)" if diagnosis.outputs_diverge
                        else " on these inputs"))
    else:
        lines += _first_text(diagnosis, first)
    if diagnosis.notes:
        lines += ["", "notes:"] + [f"  {n}" for n in diagnosis.notes]
    lines += [""] + _findings_table(diagnosis, show_all).splitlines()
    if diagnosis.kept:
        lines += ["", f"the failing model made again is kept in {diagnosis.kept}"]
    return "\n".join(_wrap(line) for line in lines)


def _wrap(line: str, width: int = 100) -> str:
    """Long lines wrapped under their value column, so the text fits 100 columns."""
    if len(line) <= width or line.startswith("  " * 2 + " "):
        return line
    match = re.match(r"^(  \S+ +)(?=\S)", line)
    indent = 13 if match and len(match.group(1)) == 13 else 4
    return textwrap.fill(line, width, subsequent_indent=" " * indent,
                         break_on_hyphens=False, break_long_words=False)


def _first_text(diagnosis: Diagnosis, first: Finding) -> list[str]:
    node = first.node
    comparison = first.comparison
    lines = []
    if diagnosis.kind == "export":
        layer = f"'{first.scope}'" if first.scope else "the model's own forward()"
        lines.append(f"first divergence: layer {layer} ({first.description}), ONNX node "
                     f"{node.name} ({node.op_type})")
    else:
        lines.append(f"first divergence: node {node.name} ({node.op_type})")
    lines.append(f"  inputs     {node.inputs_text()}")
    lines.append(f"  output     {first.tensor}"
                 + (f" (was {first.reference_tensor})"
                    if diagnosis.kind == "pass" and first.tensor != first.reference_tensor
                    else "") + f": {comparison.problem}")
    lines.append(f"  error      max abs {comparison.max_abs:.3g}, mean abs "
                 f"{comparison.mean_abs:.3g}, cosine {comparison.cosine:.6f}")
    if diagnosis.kind == "pass":
        lines.append("  every tensor before it matches, so this node is where the pass "
                     "changed the numerics")
        if first.candidate_node is not None:
            cn = first.candidate_node
            lines.append(f"  after the pass the tensor comes from {cn.name} ({cn.op_type})")
        if _is_quantization(diagnosis, first):
            lines.append(f"  what to do: this layer does not survive INT8: leave node "
                         f"{node.name} out of quantization (onnxruntime quantize_dynamic("
                         f"nodes_to_exclude=['{node.name}'])), try per-channel weights "
                         "(--pass-option quantize.per_channel=true), or keep this target "
                         "fp32 (--quantize off)")
        else:
            lines.append(f"  what to do: keep node {node.name} out of {diagnosis.stage} (or "
                         "fix the pass for this op), or give this target a looser budget "
                         "if the error is acceptable")
    else:
        if first.layer_nodes:
            lines.append(f"  its nodes  {', '.join(first.layer_nodes[:8])}"
                         + (" ..." if len(first.layer_nodes) > 8 else ""))
        lines.append("  every layer that ran before it matches, so the ONNX translation of "
                     "this layer changes its numerics")
        other = (f"--exporter {diagnosis.other_exporters[0]}" if diagnosis.other_exporters
                 else "another exporter")
        lines.append(f"  what to do: write layer {first.scope or '(the model)'} with other "
                     f"ops, or export with {other}; check that layer in Netron by the node "
                     "names above")
    return lines


def _is_quantization(diagnosis: Diagnosis, finding: Finding) -> bool:
    stage = diagnosis.stage.lower()
    if "quant" in stage or "int8" in stage:
        return True
    node = finding.candidate_node
    return node is not None and (
        any(key in node.op_type for key in ("Integer", "Quant", "QLinear"))
        or "quant" in node.name.lower())


def _findings_table(diagnosis: Diagnosis, show_all: bool) -> str:
    from onnxport.report.formatting import table

    findings = diagnosis.findings
    first = diagnosis.first
    if not findings:
        return "no tensors were compared"
    if show_all or len(findings) <= 12:
        shown = findings
        head = "every compared tensor:"
    else:
        at = findings.index(first) if first is not None else len(findings) - 1
        shown = findings[max(0, at - 4):at + 4]
        head = (f"compared tensors around the first divergence ({len(shown)} of "
                f"{len(findings)}; --all shows every one):")
    rows = []
    for f in shown:
        layer = (f.scope or "(model)") if diagnosis.kind == "export" else f.node.name
        status = ("ok" if f.passed else
                  "FIRST" if f is first else "diverges")
        c = f.comparison
        rows.append([layer, f.node.op_type, _short(f.tensor, 34),
                     "-" if math.isnan(c.max_abs) else f"{c.max_abs:.2e}",
                     "-" if math.isnan(c.cosine) else f"{c.cosine:.6f}", status])
    header = ["layer" if diagnosis.kind == "export" else "node", "op", "tensor",
              "max abs", "cosine", "status"]
    return head + "\n" + "\n".join("  " + line for line in table(header, rows).splitlines())


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."
