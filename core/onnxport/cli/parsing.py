"""Reading the command line's text values: shapes, ranges, tolerances, pass options.
Each returns the Python value `build_request` (and the other commands) take."""

from __future__ import annotations

import re
from typing import Any

from onnxport.errors import BadInput
from onnxport.records import Tolerance

_CREDENTIALS_IN_URI = re.compile(r"(?<=://)[^/@\s]+@")


def redact(argument: str) -> str:
    """A command-line word as it may be written down: no user:password@ in URIs."""
    return _CREDENTIALS_IN_URI.sub("***@", argument)


def parse_tolerance(text: str) -> tuple[str, Tolerance]:
    """`OUTPUT:atol=X,rtol=Y`: a budget for one output (fields not given: defaults)."""
    output, sep, spec = text.partition(":")
    fields: dict[str, float] = {}
    try:
        for part in spec.split(","):
            key, _, value = part.partition("=")
            if key.strip() not in Tolerance.__dataclass_fields__:
                raise ValueError(key)
            fields[key.strip()] = float(value)
    except ValueError as exc:
        raise BadInput(f"--tolerance {text!r} is not OUTPUT:atol=X,rtol=Y",
                       "keys: " + ", ".join(Tolerance.__dataclass_fields__)) from exc
    if not sep or not output:
        raise BadInput(f"--tolerance {text!r} names no output",
                       "write it like uncertainties:atol=1e-4,rtol=0")
    if any(v < 0 or v != v for v in fields.values()):
        raise BadInput(f"--tolerance {text!r}: a budget is a number >= 0")
    return output, Tolerance(**{**Tolerance().__dict__, **fields})


def parse_pass_options(items: list[str]) -> dict[str, dict[str, Any]]:
    """`PASS.KEY=VALUE` items (VALUE read as TOML, else as a string)."""
    from onnxport.flow.config import tomllib

    options: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        pass_name, dot, option = key.strip().partition(".")
        if not sep or not dot or not pass_name or not option:
            raise BadInput(f"--pass-option {item!r} is not PASS.KEY=VALUE",
                           "write it like quantize.weight_type=QUInt8")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        options.setdefault(pass_name, {})[option] = value
    return options


def parse_key_values(items: list[str], flag: str) -> dict[str, str]:
    """`KEY=VALUE` items, as strings."""
    values = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise BadInput(f"{flag} {item!r} is not KEY=VALUE")
        values[key.strip()] = value
    return values


def names(text: str | None) -> tuple[str, ...] | None:
    """`A,B` -> ("A", "B")."""
    return None if text is None else tuple(n.strip() for n in text.split(",") if n.strip())


def ints(text: str | None, flag: str) -> tuple[int, ...] | None:
    """`1,3` -> (1, 3)."""
    if text is None:
        return None
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError as exc:
        raise BadInput(f"{flag} {text!r} is not a comma-separated list of integers") \
            from exc
