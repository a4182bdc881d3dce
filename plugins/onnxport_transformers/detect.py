"""Whether a source is a Hugging Face model, decided without importing transformers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onnxport.records import Source


@dataclass(frozen=True)
class HubModel:
    """A model on the Hugging Face Hub, by id (`"org/name"`), to convert where the
    network allows: `onnxport.convert(HubModel("org/name"), output=...)`, or returned by
    a factory. Offline (`HF_HUB_OFFLINE=1`, or no network) loading it is `BadInput`."""

    id: str
    revision: str | None = None


def can_load(source: Source) -> bool:
    if source.kind == "path":
        return model_type_of(source.path) is not None
    return isinstance(source.value, HubModel)


def read_config(directory: Path) -> dict[str, Any] | None:
    """config.json of a save_pretrained directory, or None when there is none (or it is
    not a JSON object)."""
    path = Path(directory) / "config.json"
    if not Path(directory).is_dir() or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def model_type_of(directory: Path) -> str | None:
    config = read_config(directory)
    model_type = (config or {}).get("model_type")
    return model_type if isinstance(model_type, str) and model_type else None
