"""The two JSON documents of an artifact: each target's manifest.json (what the model is,
where it came from, how it was checked) and the run's report.json (every stage of every
target, with timings and the environment)."""

from __future__ import annotations

import datetime
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from onnxport.artifact.writing import describe_files, sha256_of
from onnxport.flow.environment import machine, versions

if TYPE_CHECKING:
    from onnxport.flow.pipeline import ConversionRequest, TargetArtifact
    from onnxport.records import Backend, ExportResult, LoadedModel

MANIFEST_FORMAT = "onnxport-artifact/1"
RECORDED_LOAD_OPTIONS = ("custom_objects",)  # what `onnxport verify` needs to load again
REPORT_FORMAT = "onnxport-report/1"


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def describe_source(request: ConversionRequest, loaded: LoadedModel,
                    exported: ExportResult) -> dict[str, Any]:
    weights = request.source.weights
    return {
        "origin": request.source.origin,
        "kind": request.source.kind,
        "weights": None if weights is None else {
            "path": str(weights), "sha256": sha256_of(Path(weights))},
        "framework": loaded.framework,
        "framework_version": loaded.framework_version,
        "backend": loaded.backend,
        "description": loaded.description,
        "exporter": exported.exporter,
        "load_options": {k: v for k, v in request.backend_options.items()
                         if k in RECORDED_LOAD_OPTIONS},
        "details": loaded.details,
    }


def build_manifest(request: ConversionRequest, artifact: TargetArtifact,
                   loaded: LoadedModel, exported: ExportResult) -> dict[str, Any]:
    target, model_path = artifact.target, artifact.model_path
    final = artifact.final
    info = final.info
    files = [model_path.name, *info.external_data]
    return {
        "format": MANIFEST_FORMAT,
        "name": model_path.stem,
        "created": _now(),
        "model": model_path.name,
        "model_format": model_path.suffix.lstrip("."),
        "runner": artifact.runner,
        "files": describe_files(artifact.directory, files),
        "target": {
            "name": target.name,
            "requested": artifact.requested,
            "description": target.description,
            "runner": target.runner,
            "providers": list(target.providers),
            "provider_options": {k: dict(v) for k, v in target.provider_options.items()},
            "allow_fallback": target.allow_fallback,
            "ran_on": final.verification.providers,
            "graph_optimization_level": target.graph_optimization_level,
            "options": {k: dict(v) for k, v in target.options.items()},
            "tolerance": asdict(target.tolerance),
            "quantized_tolerance": asdict(target.quantized_tolerance),
        },
        "onnx": None if model_path.suffix != ".onnx" else {
            "opset": info.opset,
            "opsets": info.opsets,
            "ir_version": info.ir_version,
            "producer": info.producer,
            "inputs": [asdict(t) for t in info.inputs],
            "outputs": [asdict(t) for t in info.outputs],
            "parameter_count": info.parameter_count,
            "node_count": info.node_count,
        },
        "interface": {
            "inputs": loaded.input_names,
            "outputs": loaded.output_names,
            "dynamic_batch": request.dynamic_batch,
        },
        "source": describe_source(request, loaded, exported),
        "passes": [{"name": s.stage, "status": s.status, "settings": s.settings,
                    "reason": s.reason} for s in artifact.stages[1:]],
        "warnings": artifact.warnings,
        "versions": versions(),
        "made_by": request.made_by,
        "verification": final.verification.to_dict(),
    }


def build_report(request: ConversionRequest, name: str, backend: Backend,
                 loaded: LoadedModel, exported: ExportResult,
                 artifacts: list[TargetArtifact], timings: dict[str, float],
                 passed: bool) -> dict[str, Any]:
    settings = request.verification
    return {
        "format": REPORT_FORMAT,
        "name": name,
        "created": _now(),
        "status": "passed" if passed else "failed",
        "source": describe_source(request, loaded, exported),
        "export": {"backend": backend.name, "exporter": exported.exporter,
                   "opset": exported.opset, "warnings": exported.warnings,
                   "details": exported.details},
        "verification_settings": {
            "seed": settings.seed,
            "batch_sizes": settings.batch_sizes,
            "input_ranges": dict(settings.input_ranges),
            "data": None if settings.data is None else str(settings.data),
            "tolerance": None if settings.tolerance is None else asdict(settings.tolerance),
            "output_tolerances": {k: asdict(v)
                                  for k, v in settings.output_tolerances.items()},
            "latency_runs": settings.latency_runs,
            "classifiers": sorted(settings.classifiers),
            "rule": "|onnx - source| <= atol + rtol * |source| for every element of every "
                    "output, at every batch checked",
        },
        "targets": {
            a.target.name: {
                "status": "passed" if a.passed else "failed",
                "directory": a.target.name,
                "model": f"{a.target.name}/{a.model_path.name}",
                "warnings": a.warnings,
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
