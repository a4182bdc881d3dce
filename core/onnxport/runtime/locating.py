"""From the path a user gives (an artifact, a target directory, an .onnx file) to the
model file and its manifest, read through `onnxport.artifact.reading`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from onnxport.artifact.reading import (MANIFEST, ArtifactError, ArtifactNotFound, confined,
                                       read_manifest, target_directories)

PathLike = Union[str, "os.PathLike[str]"]


@dataclass
class Located:
    model: Path
    manifest: dict | None
    directory: Path | None  # the target directory holding manifest.json


def locate(path: PathLike, target: str | None) -> Located:
    path = Path(os.fspath(path))
    if not path.exists():
        where = (f"{path.parent} does not exist either" if not path.parent.exists()
                 else f"{path.parent} exists")
        raise ArtifactNotFound(
            f"no onnxport artifact or model at {path} ({where})",
            "pass the directory `onnxport convert -o` wrote, one of its target directories, "
            "or an .onnx file")
    if path.is_file():
        if path.name == MANIFEST:
            return _from_target_dir(path.parent, target)
        if path.suffix != ".onnx":
            raise ArtifactError(f"{path} is not an .onnx file or an artifact directory",
                                "this runtime runs ONNX models")
        beside = path.parent / MANIFEST
        if beside.is_file():  # a model inside a target directory: use its manifest
            manifest = read_manifest(beside)
            if manifest.get("model") == path.name:
                return Located(path, manifest, path.parent)
        return Located(path, None, None)
    if (path / MANIFEST).is_file():
        return _from_target_dir(path, target)
    targets = target_directories(path)
    if not targets:
        models = sorted(p.name for p in path.glob("*.onnx"))
        hint = (f"pass the model file itself, e.g. {path / models[0]}" if models else
                "pass the directory `onnxport convert -o` wrote, or an .onnx file")
        raise ArtifactError(f"{path} is not an onnxport artifact: no {MANIFEST} in it "
                            "or in a target directory under it", hint)
    if target is None:
        if len(targets) > 1:
            raise ArtifactError(
                f"{path} holds {len(targets)} targets ({', '.join(targets)})",
                "choose one with target=, e.g. InferenceModel(path, "
                f"target={next(iter(targets))!r})")
        target = next(iter(targets))
    if target not in targets:
        raise ArtifactError(f"{path} has no target {target!r}",
                            "its targets are: " + ", ".join(targets))
    return _from_target_dir(targets[target], None)


def _from_target_dir(directory: Path, target: str | None) -> Located:
    manifest = read_manifest(directory / MANIFEST)
    name = (manifest.get("target") or {}).get("name", directory.name)
    if target is not None and target not in (name, directory.name):
        raise ArtifactError(f"{directory} is target {name!r}, not {target!r}",
                            "leave target= out or pass the artifact directory above it")
    model = confined(directory, manifest["model"], str(directory / MANIFEST))
    if model.suffix != ".onnx":
        raise ArtifactError(f"target {name!r} in {directory} holds a "
                            f"{model.suffix.lstrip('.') or 'non-ONNX'} model ({model.name})",
                            "this runtime runs ONNX models: convert for an ONNX target")
    return Located(model, manifest, directory)
