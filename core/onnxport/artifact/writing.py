"""Writing the files of an artifact: strict JSON, and the size and sha256 of each file
(committing the directory into place is `artifact.committing`)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from onnxport.artifact.reading import sha256_of



def describe_files(directory: Path, names: list[str]) -> list[dict[str, Any]]:
    """sha256 and size of each file, for the manifest (paths relative to `directory`)."""
    return [{"path": name, "bytes": (directory / name).stat().st_size,
             "sha256": sha256_of(directory / name)} for name in names]


def write_json(path: Path, data: Any) -> None:
    """Strict JSON any parser reads: infinities and NaN become "inf", "-inf", "nan"."""
    path.write_text(json.dumps(strict_json(data), indent=2, allow_nan=False) + "\n")


def strict_json(data: Any) -> Any:
    """`data` as plain JSON values (paths, numpy scalars, dataclasses converted), with
    infinities and NaN as the strings "inf", "-inf", "nan"."""
    return _finite(json.loads(json.dumps(data, default=_jsonable)))


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "__dataclass_fields__"):
        from dataclasses import asdict
        return asdict(value)
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
