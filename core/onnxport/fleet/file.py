"""A fleet file: many models, each converted exactly as `onnxport convert` would.

    [defaults]                      # every model's options unless it says otherwise
    targets = ["cpu", "rpi4"]
    quantize = "auto"
    latency_runs = 5

    [[models]]
    name = "wakeword-jarvis"
    source = "examples/zoo/wakeword.py:build"
    weights = "checkpoints/jarvis.pt"
    classifiers = ["logits"]

    [[models]]
    name = "planner"
    source = "examples/zoo/planner.py:build"
    targets = ["x86-avx2"]

A model's keys are `name`, `source`, `timeout`, and the keyword options of
`onnxport.convert` by their Python names (`targets`, `quantize`, `weights`, `atol`,
`pass_options`, ...). Relative paths are relative to the fleet file. A mistake names the
model, the key and the file; nothing runs until the whole file is read.
"""

from __future__ import annotations

import inspect
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onnxport.artifact.names import checked_name
from onnxport.errors import BadInput

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# options of a model that are not build_request's: the fleet decides these itself
_FLEET_KEYS = {"name", "source", "timeout"}
_OWNED = {"output", "overwrite", "made_by", "example_inputs", "model"}
_PATHS = {"weights", "data", "config"}


@dataclass
class FleetModel:
    """One model of a fleet: its name, its source, and its `build_request` options."""

    name: str
    source: str
    options: dict[str, Any] = field(default_factory=dict)
    timeout: float | None = None


@dataclass
class Fleet:
    path: Path
    models: list[FleetModel]


def request_options() -> set[str]:
    """The keyword options a model may set: those of `build_request`."""
    from onnxport.flow.building import build_request

    parameters = inspect.signature(build_request).parameters.values()
    return {p.name for p in parameters if p.kind is p.KEYWORD_ONLY} - _OWNED


def read_fleet(path: Path) -> Fleet:
    """The fleet file at `path`, every key checked."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"fleet file {path} does not exist")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path} is not valid TOML: {exc}") from exc
    unknown = sorted(set(data) - {"defaults", "models"})
    if unknown:
        raise BadInput(f"{path}: unknown key '{unknown[0]}'",
                       "a fleet file has [defaults] and [[models]]")
    defaults = data.get("defaults", {})
    models = data.get("models", [])
    if not isinstance(defaults, dict):
        raise BadInput(f"{path}: [defaults] must be a table")
    if not isinstance(models, list) or not models or \
            not all(isinstance(m, dict) for m in models):
        raise BadInput(f"{path}: no models", "list each model as a [[models]] table")
    known = request_options() | _FLEET_KEYS
    _check_keys(path, "[defaults]", defaults, known - {"name", "source"})
    fleet = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(models, 1):
        where = f"model {entry.get('name', f'#{index}')!s}"
        _check_keys(path, where, entry, known)
        merged = {**defaults, **entry}
        name = checked_name(merged.get("name"), f"{path}: {where}: name")
        if name in seen:
            raise BadInput(f"{path}: two models are named '{name}' (#{seen[name]} and "
                           f"#{index})", "give each model its own name")
        seen[name] = index
        source = merged.get("source")
        if not isinstance(source, str) or not source:
            raise BadInput(f"{path}: {where} has no source",
                           "source = \"module:function\" or a model file")
        timeout = merged.pop("timeout", None)
        if timeout is not None and (isinstance(timeout, bool) or
                                    not isinstance(timeout, (int, float)) or timeout < 0):
            raise BadInput(f"{path}: {where}: timeout must be a number of seconds >= 0")
        options = {k: v for k, v in merged.items() if k not in _FLEET_KEYS}
        fleet.append(FleetModel(name, _relative(path, source, source=True),
                                _paths(path, options), timeout))
    return Fleet(path, fleet)


def _check_keys(path: Path, where: str, table: dict[str, Any], known: set[str]) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise BadInput(f"{path}: {where}: unknown key '{unknown[0]}'",
                       "known keys: " + ", ".join(sorted(known)))


def _paths(path: Path, options: dict[str, Any]) -> dict[str, Any]:
    """File options relative to the fleet file, as a user reading it expects."""
    return {k: _relative(path, v) if k in _PATHS and isinstance(v, str) else v
            for k, v in options.items()}


def _relative(fleet: Path, value: str, source: bool = False) -> str:
    """A path (or a factory's `path/file.py:function`) resolved against the fleet file's
    directory; a dotted `package.module:function` is left as it is."""
    base = fleet.absolute().parent
    if source:
        module, sep, function = value.rpartition(":")
        if sep and (module.endswith(".py") or "/" in module) and \
                not Path(module).is_absolute():
            return f"{base / module}:{function}"
        if sep:
            return value
    candidate = Path(value)
    return str(candidate if candidate.is_absolute() else base / candidate)
