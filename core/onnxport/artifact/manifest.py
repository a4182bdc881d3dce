"""Each target's manifest.json: what the model is, where it came from, how it was
checked, and the sha256 of every file (what `onnxport verify`, `pull` and the runtime
check before they trust a file)."""

from __future__ import annotations

import datetime
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from onnxport.artifact.reading import sha256_of
from onnxport.artifact.writing import describe_files
from onnxport.flow.environment import versions
from onnxport.tolerance import to_json

if TYPE_CHECKING:
    from onnxport.conversion import ConversionRequest, TargetArtifact
    from onnxport.records import ExportResult, LoadedModel

MANIFEST_FORMAT = "onnxport-artifact/1"
# What `onnxport verify` needs to load the source again: Keras custom objects, a task.
RECORDED_LOAD_OPTIONS = ("custom_objects", "task")


def now() -> str:
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
        "routes": exported.details.get("routes", []),
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
        "created": now(),
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
            "tolerance": to_json(target.tolerance),
            "quantized_tolerance": to_json(target.quantized_tolerance),
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
