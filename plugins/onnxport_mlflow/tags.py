"""What a model version says about itself: its tags (format, framework, target, sha256,
verification figures) and its description, from the artifact's manifests."""

from __future__ import annotations

import hashlib
from typing import Any


def artifact_sha256(manifests: list[dict[str, Any]]) -> str:
    """The digest over every model file of the artifact (the `artifact_sha256` tag)."""
    from onnxport.artifact.publishing import artifact_digest

    return hashlib.sha256(artifact_digest(manifests).encode()).hexdigest()


def model_sha256(manifest: dict[str, Any]) -> str:
    model = manifest.get("model")
    for entry in manifest.get("files", []):
        if entry["path"] == model:
            return entry["sha256"]
    return manifest["files"][0]["sha256"] if manifest.get("files") else ""


def model_format(manifest: dict[str, Any]) -> str:
    """onnx, tflite, ...: `model_format` (older manifests: a second `format` key)."""
    fmt = manifest.get("model_format") or manifest.get("format") or "onnx"
    return "onnx" if str(fmt).startswith("onnxport-") else str(fmt)


def version_tags(manifests: list[dict[str, Any]], name: str) -> dict[str, str]:
    import onnxport

    first = manifests[0]
    source = first.get("source") or {}
    tags = {
        "format": model_format(first),
        "framework": str(source.get("framework") or ""),
        "framework_version": str(source.get("framework_version") or ""),
        "source": str(source.get("origin") or ""),
        "target": ",".join(m["target"]["name"] for m in manifests),
        "artifact_sha256": artifact_sha256(manifests),
        "onnxport_version": onnxport.__version__,
        "onnxport_name": name,
    }
    onnx = first.get("onnx") or {}
    if onnx.get("opset"):
        tags["opset"] = str(onnx["opset"])
    for manifest in manifests:
        suffix = "" if len(manifests) == 1 else f".{manifest['target']['name']}"
        verification = manifest.get("verification") or {}
        tags[f"sha256{suffix}"] = model_sha256(manifest)
        tags[f"verification{suffix}"] = "passed" if verification.get("passed") else "failed"
        if verification.get("max_abs") is not None:
            tags[f"max_abs{suffix}"] = f"{float(verification['max_abs']):.6g}"
        providers = verification.get("providers")
        if providers:
            tags[f"providers{suffix}"] = ",".join(map(str, providers))
    return {k: v[:4900] for k, v in tags.items() if v}


def description(manifests: list[dict[str, Any]], name: str) -> str:
    first = manifests[0]
    source = first.get("source") or {}
    parts = []
    for manifest in manifests:
        verification = manifest.get("verification") or {}
        worst = verification.get("max_abs")
        parts.append(f"{manifest['target']['name']} (max |error| {float(worst):.3g})"
                     if worst is not None else manifest["target"]["name"])
    return (f"{name}: {model_format(first)} for {', '.join(parts)}, converted from "
            f"{source.get('framework', '?')} {source.get('framework_version', '')} and "
            "verified by onnxport")
