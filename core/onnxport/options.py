"""Typed options for plugins: a dataclass is the schema, `parse_options` checks a mapping
against it.

A pass's settings (a target's `options["quantize"]`), a publisher's settings
(`--publish-option KEY=VALUE`) and any other plugin's are declared once, as a frozen
dataclass whose fields say the type, the default and the help, with `option(...)` for
choices, bounds and a converter::

    @dataclass(frozen=True)
    class SimplifyOptions:
        timeout: float = option(300.0, above=0, help="seconds before the child is stopped")
        skip_fuse_bn: bool = option(False, help="keep BatchNormalization apart from Conv")

    settings = parse_options(SimplifyOptions, target.options.get("simplify", {}),
                             where=f"target '{target.name}'", prefix="simplify.")

An unknown key is an error naming the known ones; a wrong type, a value outside its
choices or bounds is an error naming the key, the value and what it must be. With
`text=True` values may arrive as strings (from a command line) and are converted.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Callable, Mapping, TypeVar

from onnxport.errors import BadInput

T = TypeVar("T")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def option(default: Any = dataclasses.MISSING, *, help: str = "",
           choices: tuple[Any, ...] | None = None, minimum: float | None = None,
           above: float | None = None, below: float | None = None,
           convert: Callable[[Any], Any] | None = None) -> Any:
    """A field of an options schema. `minimum` is inclusive, `above` and `below` are
    exclusive; `convert(value)` returns the value to keep or raises
    `ValueError(what is wrong[, what to do])`, after the type check."""
    meta = {"help": help, "choices": choices, "minimum": minimum, "above": above,
            "below": below, "convert": convert}
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple (or None) as an option's default, not a mutable value")
    return dataclasses.field(default=default, metadata=meta)


def parse_options(schema: type[T], values: Mapping[str, Any], *, where: str,
                  prefix: str = "", text: bool = False) -> T:
    """`schema` built from `values`; every problem is a `BadInput` that names the key."""
    if not isinstance(values, Mapping):
        raise BadInput(f"{where}: {prefix.rstrip('.') or 'options'} must be a table of "
                       f"settings, not {values!r}")
    fields = {f.name: f for f in dataclasses.fields(schema)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(schema)
    parsed: dict[str, Any] = {}
    for key, value in values.items():
        field = fields.get(key)
        if field is None:
            raise BadInput(f"{where}: unknown option {prefix}{key}",
                           "known options: " + ", ".join(sorted(fields)))
        parsed[key] = _checked(f"{where}: {prefix}{key}", value, hints[key],
                               field.metadata, text)
    return schema(**parsed)


def describe_options(schema: type) -> list[dict[str, Any]]:
    """Each option's name, type, default and help: for listings and docs."""
    hints = typing.get_type_hints(schema)
    return [{"name": f.name, "type": _type_name(hints[f.name]),
             "default": None if f.default is dataclasses.MISSING else f.default,
             "help": f.metadata.get("help", "")} for f in dataclasses.fields(schema)]


def _checked(what: str, value: Any, annotation: Any, meta: Mapping[str, Any],
             text: bool) -> Any:
    kind, optional = _unwrap(annotation)
    if value is None or (text and optional and value == ""):
        if optional:
            return None
        raise BadInput(f"{what} must be {_type_name(kind)}, not None")
    value = _typed(what, value, kind, text)
    choices = meta.get("choices")
    if choices is not None:
        items = value if isinstance(value, tuple) else (value,)
        wrong = [v for v in items if v not in choices]
        if wrong:
            raise BadInput(f"{what} must be one of {', '.join(map(str, choices))}, "
                           f"not {wrong[0]!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        for bound, test, words in (("minimum", lambda v, b: v >= b, "at least"),
                                   ("above", lambda v, b: v > b, "above"),
                                   ("below", lambda v, b: v < b, "below")):
            limit = meta.get(bound)
            if limit is not None and not test(value, limit):
                raise BadInput(f"{what} must be {words} {limit:g}, not {value!r}")
    convert = meta.get("convert")
    if convert is not None:
        try:
            value = convert(value)
        except ValueError as exc:  # ValueError(what is wrong[, what to do])
            raise BadInput(f"{what} {exc.args[0]}",
                           exc.args[1] if len(exc.args) > 1 else None) from None
    return value


def _typed(what: str, value: Any, kind: Any, text: bool) -> Any:
    origin = typing.get_origin(kind)
    if origin is tuple:
        if text and isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        item = typing.get_args(kind)[0]
        if not isinstance(value, (list, tuple)) or not all(
                isinstance(v, item) for v in value):
            raise BadInput(f"{what} must be {_type_name(kind)}, not {value!r}")
        return tuple(value)
    if kind is bool:
        if text and isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        if not isinstance(value, bool):
            raise BadInput(f"{what} must be true or false, not {value!r}")
        return value
    if kind in (int, float):
        if text and isinstance(value, str):
            try:
                value = kind(value.strip())
            except ValueError:
                raise BadInput(f"{what} must be {_type_name(kind)}, not {value!r}") \
                    from None
        accepted = (int,) if kind is int else (int, float)
        if isinstance(value, bool) or not isinstance(value, accepted):
            raise BadInput(f"{what} must be {_type_name(kind)}, not {value!r}")
        return kind(value)
    if kind is str:
        if not isinstance(value, str):
            raise BadInput(f"{what} must be a string, not {value!r}")
        return value
    if kind is typing.Any:
        return value
    raise TypeError(f"{what}: options of type {kind!r} are not supported")


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """(the type, whether None is allowed) of `X`, `X | None` or `Optional[X]`."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0], len(args) < len(typing.get_args(annotation))
    return annotation, False


def _type_name(annotation: Any) -> str:
    kind, optional = _unwrap(annotation)
    name = {bool: "true or false", int: "a whole number", float: "a number",
            str: "a string"}.get(kind)
    if name is None and typing.get_origin(kind) is tuple:
        name = "a list of strings"
    name = name or getattr(kind, "__name__", str(kind))
    return f"{name} or None" if optional else name
