"""Plain-text tables for the terminal: compact, aligned, under 100 columns."""

from __future__ import annotations

from typing import Iterable, Sequence

from .modelinfo import ModelInfo
from .pipeline import ConversionResult
from .reverify import ArtifactCheck
from .verification import Verification


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


def error_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.1e}"


def ms_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def conversion_summary(result: ConversionResult) -> str:
    loaded, exported = result.loaded, result.exported
    head = (f"{result.name}: {loaded.framework} {loaded.framework_version} -> ONNX opset "
            f"{exported.opset} ({loaded.backend}/{exported.exporter})")
    rows = []
    for artifact in result.artifacts:
        for stage in artifact.stages:
            v = stage.verification
            if v is None:
                rows.append([artifact.target.name, stage.stage, stage.status.upper(),
                             "-", "-", "-", "-", "-", "-", stage.reason[:30]])
                continue
            latency = v.latency_ms or {}
            source_ms, onnx_ms = latency.get("source"), latency.get("onnx")
            speedup = f"{source_ms / onnx_ms:.1f}x" if source_ms and onnx_ms else "-"
            status = {"ok": "PASS", "rejected": "REJECTED"}.get(stage.status, "FAIL")
            rows.append([artifact.target.name, stage.stage, status,
                         ",".join(b.label.replace("batch ", "") for b in v.batches) or "-",
                         error_text(v.max_abs), ms_text(source_ms), ms_text(onnx_ms),
                         speedup, human_bytes(stage.info.size_bytes),
                         "/".join(p.replace("ExecutionProvider", "") for p in v.providers)
                         or "-"])
    parts = [head, "", table(["target", "stage", "status", "batches", "max|err|",
                              "src ms", "onnx ms", "speedup", "size", "ran on"], rows)]
    for artifact in result.artifacts:
        parts += ["", verification_detail(artifact.target.name, artifact.verification)]
        parts += [f"warning: {artifact.target.name}: {w}" for w in artifact.warnings]
    if result.exported.warnings:
        parts += ["", *(f"warning: {w}" for w in result.exported.warnings)]
    if result.output is not None:
        state = "wrote" if result.passed else "kept the failed candidate in"
        parts += ["", f"{state} {result.output}"]
    return "\n".join(parts)


def verification_detail(target: str, verification: Verification) -> str:
    """Per output: the worst batch's figures and the tolerance that applied."""
    rows = []
    for name, out in verification.worst_by_output().items():
        tol = out.tolerance
        agreement = "-" if out.argmax_agreement is None else f"{out.argmax_agreement:.0%}"
        rows.append([f"  {name}", "ok" if out.passed else "FAIL", error_text(out.max_abs),
                     error_text(out.mean_abs), f"{out.cosine:.6f}", agreement,
                     f"{tol.atol:g}/{tol.rtol:g}"])
    lines = [f"{target}: outputs (worst batch)",
             table(["  output", "", "max abs", "mean abs", "cosine", "argmax",
                    "atol/rtol"], rows) if rows else "  (no outputs compared)"]
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
