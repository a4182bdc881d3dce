"""report.json: every stage of every target of one conversion, with its figures,
timings, the environment and the settings it was verified with."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from onnxport.artifact.manifest import describe_source, now
from onnxport.flow.environment import machine, versions
from onnxport.tolerance import settings_to_json

if TYPE_CHECKING:
    from onnxport.conversion import ConversionRequest, TargetArtifact
    from onnxport.records import Backend, ExportResult, LoadedModel

REPORT_FORMAT = "onnxport-report/1"


def build_report(request: ConversionRequest, name: str, backend: Backend,
                 loaded: LoadedModel, exported: ExportResult,
                 artifacts: list[TargetArtifact], timings: dict[str, float],
                 passed: bool) -> dict[str, Any]:
    return {
        "format": REPORT_FORMAT,
        "name": name,
        "created": now(),
        "status": "passed" if passed else "failed",
        "source": describe_source(request, loaded, exported),
        "export": {"backend": backend.name, "exporter": exported.exporter,
                   "opset": exported.opset, "warnings": exported.warnings,
                   "details": exported.details},
        "verification_settings": settings_to_json(request.verification),
        "targets": {
            a.target.name: {
                "status": "passed" if a.passed else "failed",
                "directory": a.target.name,
                "model": f"{a.target.name}/{a.model_path.name}",
                "exporter": a.exported.exporter if a.exported else exported.exporter,
                "optimize": request.optimize,
                "latency_batches": list(a.target.latency_batches),
                "warnings": a.warnings,
                "candidates": [c.to_json() for c in a.candidates],
                "latency_budget": a.budget,
                "stages": [{
                    "stage": s.stage,
                    "status": s.status,
                    "reason": s.reason,
                    "settings": s.settings,
                    "size_bytes": s.info.size_bytes if s.info else None,
                    "node_count": s.info.node_count if s.info else None,
                    "op_histogram": s.info.op_histogram if s.info else None,
                    "verification": s.verification.to_dict() if s.verification else None,
                } for s in a.stages],
            } for a in artifacts
        },
        "timings_s": timings,
        "made_by": request.made_by,
        "versions": versions(),
        "machine": machine(),
    }


# ----------------------------------------------------------------- reading it back


def final_stage(target: dict[str, Any]) -> dict[str, Any]:
    """The stage whose model shipped, or the one that failed the target."""
    stages = target["stages"]
    failed = [s for s in stages if s["status"] == "failed"]
    return failed[0] if failed else [s for s in stages if s["status"] == "ok"][-1]


def is_decision(stage: dict[str, Any]) -> bool:
    """A rejected pass whose model verified but was not chosen (slower, not smaller, lost
    to another candidate): a decision, not a failure."""
    verification = stage.get("verification") or {}
    return stage["status"] == "rejected" and bool(verification.get("passed", True))


def kept_label(stage: dict[str, Any]) -> str:
    name = stage["stage"].lower()
    return "kept fp32" if "quant" in name or "int8" in name else f"kept without {name}"


def stage_label(stage: dict[str, Any]) -> str:
    """A stage's status for a text table: a decision reads as one, not as REJECTED."""
    if is_decision(stage):
        return kept_label(stage)
    return {"ok": "PASS", "rejected": "REJECTED", "skipped": "skipped"}.get(
        stage["status"], "FAIL")


def worst_outputs(verification: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each output at its worst batch (failing first, then the largest error)."""
    worst: dict[str, dict[str, Any]] = {}
    for batch in verification.get("batches", []):
        for out in batch["outputs"]:
            current = worst.get(out["name"])
            if current is None or _severity(out) > _severity(current):
                worst[out["name"]] = out
    return worst


def _severity(out: dict[str, Any]) -> tuple[bool, float]:
    error = float(out["max_abs"])
    return (not out["passed"], math.inf if math.isnan(error) else error)
