"""The rules every registered record must follow, in one place.

The host applies them when it collects records (and raises on the first problem); the
conformance kit (`onnxport.testing`) applies the same functions and lists every problem.
A rule has a stable id so the kit's report and its tests can name it.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from typing import Any

from onnxport.records import (Backend, Executor, Pass, Publisher, Requirements, Runner,
                              Target)

NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")

# registration hook -> (record type, what users call one)
KINDS: dict[str, tuple[type, str]] = {
    "onnxport_register_backends": (Backend, "backend"),
    "onnxport_register_runners": (Runner, "runner"),
    "onnxport_register_targets": (Target, "target"),
    "onnxport_register_passes": (Pass, "pass"),
    "onnxport_register_publishers": (Publisher, "publisher"),
    "onnxport_register_executors": (Executor, "executor"),
}

RULES = {
    "registration": "registration hooks call register() with onnxport records",
    "name": "names are lower-case [a-z0-9_.-]",
    "duplicate-name": "names are unique among the plugin's records and every installed "
                      "plugin's (built-ins included)",
    "disabled-reason": "a disabled record says why (disabled_reason)",
}


@dataclass
class Registration:
    """A record in the registry, with the plugin that registered it and its state."""

    kind: str
    record: Any
    plugin: str
    enabled: bool
    reason: str = ""
    missing: tuple[str, ...] = ()  # modules it needs that are not installed

    @property
    def name(self) -> str:
        return self.record.name


def record_problems(kind: str, record: Any, plugin: str,
                    taken: dict[str, str]) -> list[tuple[str, str]]:
    """(rule, message) for each rule `record` breaks; `taken` maps the names already
    registered for this kind to the plugin that registered them."""
    record_type = next(t for t, k in KINDS.values() if k == kind)
    if not isinstance(record, record_type):
        return [("registration", f"plugin '{plugin}' registered a "
                 f"{type(record).__name__} as a {kind}; expected "
                 f"onnxport.{record_type.__name__}")]
    name = record.name
    if not isinstance(name, str) or not NAME.match(name):
        return [("name", f"plugin '{plugin}' registered a {kind} named {name!r}; names "
                 "are lower-case letters, digits, '-', '_' and '.'")]
    problems = []
    if name in taken:
        problems.append(("duplicate-name", f"{kind} '{name}' is registered twice: by "
                         f"plugin '{taken[name]}' and by plugin '{plugin}'"))
    if not getattr(record, "enabled", True) and \
            not str(getattr(record, "disabled_reason", "")).strip():
        problems.append(("disabled-reason", f"plugin '{plugin}' registered {kind} "
                         f"'{name}' as disabled without a reason: set disabled_reason to "
                         "say why and how to enable it"))
    return problems


def missing_modules(requires: Requirements) -> tuple[str, ...]:
    return tuple(m for m in requires.modules if importlib.util.find_spec(m) is None)


def missing_requirement(requires: Requirements) -> str:
    """The reason a record cannot work here, or "" if everything it needs is installed."""
    missing = missing_modules(requires)
    if not missing:
        return ""
    install = (f": {requires.install}" if requires.install else
               f": pip install 'onnxport[{requires.extra}]'" if requires.extra else "")
    return f"needs {', '.join(missing)}, which is not installed{install}"


def registration(kind: str, record: Any, plugin: str,
                 enabled_by_user: frozenset[str]) -> Registration:
    """A record's state: on by default or turned on by the user, and installable here."""
    enabled = getattr(record, "enabled", True)
    reason = getattr(record, "disabled_reason", "")
    missing: tuple[str, ...] = ()
    if enabled or record.name in enabled_by_user:
        requires = getattr(record, "requires", Requirements())
        missing = missing_modules(requires)
        reason = missing_requirement(requires) if missing else ""
        enabled = not missing
    return Registration(kind, record, plugin, enabled, reason, missing)
