"""The user's config file: targets defined or overridden in `onnxport.toml` or in the
`[tool.onnxport]` table of `pyproject.toml`.

    [targets.edgebox]                 # a new target, based on a registered one
    base = "rpi4"
    description = "our ARM64 gateway"
    passes = ["simplify", "quantize"]
    [targets.edgebox.options.quantize]
    mode = "auto"

    [targets.cpu]                     # override fields of a registered target
    tolerance = { atol = 1e-4, rtol = 1e-3 }

Every key and value is checked: a mistake names the key and the file.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

from onnxport.errors import BadInput
from onnxport.host import PluginHost
from onnxport.records import Target, Tolerance

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CONFIG_FILE = "onnxport.toml"
LEVELS = ("disable", "basic", "extended", "all")
_TOLERANCE_KEYS = {f.name for f in dataclasses.fields(Tolerance)}
_TARGET_KEYS = {
    "base": str, "description": str, "providers": list, "provider_options": dict,
    "allow_fallback": bool, "passes": list, "opset_min": int, "opset_max": int,
    "graph_optimization_level": str, "tolerance": dict, "quantized_tolerance": dict,
    "options": dict, "latency_batches": list, "prefer": str,
    "latency_budget": (str, int, float),
}
PREFER = ("speed", "size")


def find_config(explicit: Path | None = None, cwd: Path | None = None
                ) -> tuple[Path, dict[str, Any]] | None:
    """The config to use: `--config FILE`, else ./onnxport.toml, else ./pyproject.toml's
    [tool.onnxport]; None when there is none."""
    if explicit is not None:
        if not explicit.is_file():
            raise BadInput(f"--config {explicit} does not exist")
        return explicit, read_config(explicit)
    cwd = cwd or Path.cwd()
    if (cwd / CONFIG_FILE).is_file():
        return cwd / CONFIG_FILE, read_config(cwd / CONFIG_FILE)
    pyproject = cwd / "pyproject.toml"
    if pyproject.is_file():
        section = _read(pyproject).get("tool", {}).get("onnxport")
        if section is not None:
            return pyproject, section
    return None


def read_config(path: Path) -> dict[str, Any]:
    """The onnxport settings in a config file (a pyproject.toml's [tool.onnxport])."""
    data = _read(path)
    if path.name == "pyproject.toml":
        data = data.get("tool", {}).get("onnxport", {})
    return data


def configured(host: PluginHost, path: Path | None) -> PluginHost:
    """`host` as a request with this config file sees it: the file's targets defined or
    changed, beside the plugins' own. The host itself is not changed."""
    if path is None:
        return host
    data = read_config(path)
    where = f"{path}" + (" [tool.onnxport]" if path.name == "pyproject.toml" else "")
    unknown = sorted(set(data) - {"targets"})
    if unknown:
        raise BadInput(f"{where}: unknown key '{unknown[0]}'", "the known key is: targets")
    targets = data.get("targets", {})
    if not isinstance(targets, dict):
        raise BadInput(f"{where}: 'targets' must be a table of targets")
    for name, fields in targets.items():
        if not isinstance(fields, dict):
            raise BadInput(f"{where}: targets.{name} must be a table")
        target = _target(host, where, name, fields)
        host = host.view(records=[("target", target, f"config {where}")])
    return host


def _target(host: PluginHost, where: str, name: str, fields: dict[str, Any]) -> Target:
    for key, value in fields.items():
        expected = _TARGET_KEYS.get(key)
        if expected is None:
            raise BadInput(f"{where}: unknown key targets.{name}.{key}",
                           "known keys: " + ", ".join(sorted(_TARGET_KEYS)))
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            kind = (" or ".join(e.__name__ for e in expected)
                    if isinstance(expected, tuple) else expected.__name__)
            raise BadInput(f"{where}: targets.{name}.{key} must be a {kind}, "
                           f"not {type(value).__name__} ({value!r})")
    existing = host.registrations("target").get(name)
    base_name = fields.get("base", name if existing else "cpu")
    base_entry = host.registrations("target").get(base_name)
    if base_entry is None:
        raise BadInput(f"{where}: targets.{name}.base names unknown target '{base_name}'",
                       "known targets: " + ", ".join(sorted(host.registrations("target"))))
    changes: dict[str, Any] = {"name": name}
    for key, value in fields.items():
        if key == "base":
            continue
        if key in ("tolerance", "quantized_tolerance"):
            value = _tolerance(where, f"targets.{name}.{key}", value,
                               getattr(base_entry.record, key))
        elif key in ("providers", "passes"):
            if not all(isinstance(v, str) for v in value):
                raise BadInput(f"{where}: targets.{name}.{key} must be a list of names")
            known = host.registrations("pass")
            unknown = [v for v in value if key == "passes" and v not in known]
            if unknown:
                raise BadInput(f"{where}: targets.{name}.passes names unknown pass "
                               f"'{unknown[0]}'", "known passes: "
                               + (", ".join(sorted(known)) or "none"))
            value = tuple(value)
        elif key == "latency_batches":
            if not value or not all(isinstance(v, int) and not isinstance(v, bool)
                                    and v >= 1 for v in value):
                raise BadInput(f"{where}: targets.{name}.latency_batches must be a list "
                               f"of batch sizes >= 1, not {value!r}")
            value = tuple(value)
        elif key == "latency_budget":
            from onnxport.flow.budget import parse_budget

            value = parse_budget(value)
        elif key == "prefer" and value not in PREFER:
            raise BadInput(f"{where}: targets.{name}.prefer must be one of "
                           f"{', '.join(PREFER)}, not {value!r}")
        elif key == "graph_optimization_level" and value not in LEVELS:
            raise BadInput(f"{where}: targets.{name}.{key} must be one of "
                           f"{', '.join(LEVELS)}, not {value!r}")
        elif key == "options":
            merged = {k: dict(v) for k, v in base_entry.record.options.items()}
            for pass_name, pass_options in value.items():
                if not isinstance(pass_options, dict):
                    raise BadInput(f"{where}: targets.{name}.options.{pass_name} must be "
                                   "a table of that pass's settings")
                merged.setdefault(pass_name, {}).update(pass_options)
            value = merged
        changes[key] = value
    if not existing and "description" not in changes:
        changes["description"] = f"{base_entry.record.description} (as {name}, from {where})"
    if not existing:
        changes["resolve"] = None
    return dataclasses.replace(base_entry.record, **changes)


def _tolerance(where: str, key: str, value: dict[str, Any], base: Tolerance) -> Tolerance:
    for field, number in value.items():
        if field not in _TOLERANCE_KEYS:
            raise BadInput(f"{where}: unknown key {key}.{field}",
                           "known keys: " + ", ".join(sorted(_TOLERANCE_KEYS)))
        if not isinstance(number, (int, float)) or isinstance(number, bool):
            raise BadInput(f"{where}: {key}.{field} must be a number, not {number!r}")
    return dataclasses.replace(base, **{k: float(v) for k, v in value.items()})


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path} is not valid TOML: {exc}") from exc
