"""The skip key of a fleet model: equal exactly when converting it again would do the
same work, so an unchanged model is not converted twice.

It hashes what the conversion reads (the factory's module file, the model file or
directory, the weights, the verification data, the config file), the request's settings
(everything but where the artifact goes), and the versions of onnxport and of every
plugin loaded. It is recorded in the artifact's manifest and report (`made_by.fleet`).
Nothing here imports or runs the source.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Any, Iterable

from onnxport.conversion import ConversionRequest
from onnxport.flow.building import request_to_json

_NOT_SETTINGS = ("output", "made_by", "overwrite")


def fleet_key(request: ConversionRequest, plugin_versions: dict[str, str]) -> str:
    """sha256 of the inputs, settings and versions of one conversion."""
    from onnxport import __version__

    settings = {k: v for k, v in request_to_json(request).items() if k not in _NOT_SETTINGS}
    digest = hashlib.sha256()
    digest.update(json.dumps({"settings": settings, "onnxport": __version__,
                              "plugins": dict(sorted(plugin_versions.items()))},
                             sort_keys=True, default=str).encode())
    for path in _inputs(request):
        digest.update(str(path).encode())
        for file in _files(path):
            digest.update(file.name.encode())
            with open(file, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


def _inputs(request: ConversionRequest) -> list[Path]:
    source = request.source
    paths = [request.source.weights, request.verification.data, request.config]
    if source.kind == "path":
        paths.append(Path(source.value))
    elif source.kind == "factory":
        paths.append(_module_file(source.origin.rpartition(":")[0]))
    return [Path(p) for p in paths if p is not None]


def _module_file(module: str) -> Path | None:
    """The file of a factory's module, found without importing it."""
    if module.endswith(".py") or "/" in module:
        return Path(module)
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    return Path(spec.origin) if spec is not None and spec.origin else None


def _files(path: Path) -> Iterable[Path]:
    if path.is_file():
        yield path
    elif path.is_dir():
        yield from sorted(p for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def recorded_key(report: dict[str, Any] | None) -> str | None:
    """The key an artifact's report recorded, if a fleet made it."""
    if not report:
        return None
    return ((report.get("made_by") or {}).get("fleet") or {}).get("key")
