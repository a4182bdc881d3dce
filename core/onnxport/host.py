"""The plugin host: finds plugins, calls their hooks, and owns the registry of names.

Built-in plugins and third-party ones are both found through the `onnxport` entry
point group; the only difference the host knows is which distribution they come from
(shown by `onnxport plugins`). `ONNXPORT_PLUGINS` restricts what is loaded:

- unset: every installed plugin;
- set and empty (`ONNXPORT_PLUGINS=`): only the plugins built into onnxport;
- `ONNXPORT_PLUGINS=torch,providers`: exactly the named plugins (entry point names).

`ONNXPORT_ENABLE=tflite,other` turns on records that their plugin registers disabled by
default (with a reason), the same as `onnxport convert --enable NAME`.

`ONNXPORT_TRACE=1` logs every hook call to stderr with the plugin that answered and the
time it took.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

import pluggy

from onnxport import hookspecs
from onnxport.errors import BadInput, MissingDependency, PluginError
from onnxport.records import Backend, Pass, Publisher, Requirements, Runner, Target

ENTRY_POINT_GROUP = "onnxport"
BUILTIN_DISTRIBUTION = "onnxport"
SELECTION_VARIABLE = "ONNXPORT_PLUGINS"
ENABLE_VARIABLE = "ONNXPORT_ENABLE"
TRACE_VARIABLE = "ONNXPORT_TRACE"

hookimpl = pluggy.HookimplMarker("onnxport")

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")

# registration hook -> (record type, what users call one)
_KINDS: dict[str, tuple[type, str]] = {
    "onnxport_register_backends": (Backend, "backend"),
    "onnxport_register_runners": (Runner, "runner"),
    "onnxport_register_targets": (Target, "target"),
    "onnxport_register_passes": (Pass, "pass"),
    "onnxport_register_publishers": (Publisher, "publisher"),
}


@dataclass
class PluginInfo:
    """One loaded plugin, as `onnxport plugins` shows it."""

    name: str
    module: str
    distribution: str
    version: str
    builtin: bool
    hooks: list[str] = field(default_factory=list)


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


class PluginHost:
    """A pluggy PluginManager plus the registry of backends, runners, targets and passes."""

    def __init__(self, *, load_entry_points: bool = True, selection: str | None = None,
                 enable: set[str] | None = None):
        self.pm = pluggy.PluginManager("onnxport")
        self.pm.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}
        self._registry: dict[str, dict[str, Registration]] | None = None
        self._overrides: list[Registration] = []
        if enable is None:
            enable = {n.strip() for n in os.environ.get(ENABLE_VARIABLE, "").split(",")
                      if n.strip()}
        self.enabled_by_user: set[str] = set(enable)
        self.tracing = os.environ.get(TRACE_VARIABLE, "") not in ("", "0")
        if load_entry_points:
            if selection is None:
                selection = os.environ.get(SELECTION_VARIABLE)
            self._load_entry_points(selection)
        self._check_pending()

    # ------------------------------------------------------------------ loading

    def _load_entry_points(self, selection: str | None) -> None:
        found: dict[str, importlib.metadata.EntryPoint] = {}
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in found and _distribution(found[ep.name]) != _distribution(ep):
                raise PluginError(
                    f"two installed plugins are both named '{ep.name}': "
                    f"{_distribution(found[ep.name])} and {_distribution(ep)}",
                    "uninstall one of them",
                )
            found[ep.name] = ep
        wanted = _parse_selection(selection, found)
        for name in sorted(wanted):
            self._load_entry_point(found[name])

    def _load_entry_point(self, ep: importlib.metadata.EntryPoint) -> None:
        dist = _distribution(ep)
        try:
            plugin = ep.load()
        except Exception as exc:  # a third-party plugin's import error is its own bug
            raise PluginError(
                f"plugin '{ep.name}' from {dist} could not be imported "
                f"({type(exc).__name__}: {exc})",
                f"reinstall or uninstall {dist}, or leave it out with "
                f"{SELECTION_VARIABLE}",
            ) from exc
        version = ep.dist.version if ep.dist else ""
        self.register(plugin, ep.name, distribution=dist, version=version)

    def register(
        self, plugin: Any, name: str, *, distribution: str = "(registered at run time)",
        version: str = "",
    ) -> None:
        """Add a plugin object or module; the registry is rebuilt on next use."""
        if name in self.infos:
            raise PluginError(
                f"a plugin named '{name}' is already registered "
                f"(from {self.infos[name].distribution})",
                "give the new plugin another name",
            )
        try:
            self.pm.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin '{name}' does not fit the contract: {exc}") from exc
        self.infos[name] = PluginInfo(
            name=name,
            module=getattr(plugin, "__name__", type(plugin).__name__),
            distribution=distribution,
            version=version,
            builtin=distribution == BUILTIN_DISTRIBUTION,
            hooks=sorted(h.name for h in self.pm.get_hookcallers(plugin) or []),
        )
        self._registry = None

    def override(self, kind: str, record: Any, source: str) -> None:
        """Put a record in the registry in place of (or beside) the plugins' own: how a
        user's config file defines and changes targets. `source` is shown as its plugin."""
        self.registrations(kind)  # build the plugins' registry first
        self._overrides = [o for o in self._overrides
                           if (o.kind, o.name) != (kind, record.name)]
        self._overrides.append(Registration(kind, record, source, True))
        self._registry = None

    def enable(self, name: str) -> None:
        """Turn on a record its plugin registers disabled by default (`--enable NAME`)."""
        self.enabled_by_user.add(name)
        self._registry = None

    def unregister(self, name: str) -> None:
        self.pm.unregister(name=name)
        self.infos.pop(name, None)
        self._registry = None

    @contextmanager
    def registered(self, plugin: Any, name: str) -> Iterator[None]:
        """Register a plugin for the duration of a `with` block (tests, one-off hooks)."""
        self.register(plugin, name)
        try:
            self._check_pending()
            yield
        finally:
            self.unregister(name)

    def _check_pending(self) -> None:
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginError(
                f"plugin '{self.pm.get_name(exc.plugin)}' implements a hook onnxport does "
                f"not have: {exc}",
                "see docs/hooks.md for the hook names",
            ) from exc

    # ------------------------------------------------------------------ calling

    def call(self, hook_name: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call every implementation of a hook; return (plugin name, result) pairs.

        The host calls implementations one by one (in pluggy's order) rather than
        through `pm.hook`, so that an exception, a trace line or a registration can be
        attributed to the plugin that made it.
        """
        caller = getattr(self.pm.hook, hook_name)
        return [(impl.plugin_name, self._invoke(impl, hook_name, kwargs))
                for impl in reversed(caller.get_hookimpls())]

    def _invoke(self, impl: Any, hook_name: str, kwargs: dict[str, Any]) -> Any:
        started = time.perf_counter()
        try:
            return impl.function(**{name: kwargs[name] for name in impl.argnames})
        except (BadInput, PluginError):
            raise
        except Exception as exc:
            raise PluginError(
                f"plugin '{impl.plugin_name}' raised in {hook_name}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        finally:
            self.trace(f"{hook_name} <- {impl.plugin_name}", started)

    def trace(self, what: str, started: float | None = None) -> None:
        """One `ONNXPORT_TRACE` line: a hook call, or a decision the core made from a
        plugin's answer (which backend claimed the source, whether a pass applies)."""
        if self.tracing:
            took = f" ({(time.perf_counter() - started) * 1000:.2f} ms)" if started else ""
            print(f"onnxport trace: {what}{took}", file=sys.stderr)

    # ------------------------------------------------------------------ registry

    def registrations(self, kind: str) -> dict[str, Registration]:
        """Every record of a kind ("backend", "runner", "target", "pass") by name."""
        if self._registry is None:
            registry = self._collect()
            for override in self._overrides:
                registry[override.kind][override.name] = override
            self._registry = registry
        return self._registry[kind]

    def _collect(self) -> dict[str, dict[str, Registration]]:
        registry: dict[str, dict[str, Registration]] = {}
        for hook_name, (record_type, kind) in _KINDS.items():
            entries: dict[str, Registration] = {}
            registry[kind] = entries
            caller = getattr(self.pm.hook, hook_name)
            for impl in reversed(caller.get_hookimpls()):
                register = _registrar(entries, kind, record_type, impl.plugin_name,
                                      self.enabled_by_user)
                self._invoke(impl, hook_name, {"register": register})
        return registry

    def get(self, kind: str, name: str) -> Any:
        """The enabled record of that kind and name, or a clear error."""
        entries = self.registrations(kind)
        entry = entries.get(name)
        if entry is None:
            known = ", ".join(sorted(entries)) or "none"
            raise BadInput(f"unknown {kind} '{name}'", f"known {kind}s: {known}")
        if entry.missing:
            requires = entry.record.requires
            raise MissingDependency(entry.missing[0], requires.extra or "all",
                                    f"the {name} {kind}", install=requires.install)
        if not entry.enabled:
            hint = (None if f"--enable {name}" in entry.reason
                    else f"enable it with --enable {name} or {ENABLE_VARIABLE}={name}")
            raise BadInput(f"{kind} '{name}' is disabled: {entry.reason}", hint)
        return entry.record

    def enabled(self, kind: str) -> list[Any]:
        return [e.record for e in self.registrations(kind).values() if e.enabled]

    def plugin_of(self, kind: str, name: str) -> str:
        return self.registrations(kind)[name].plugin


def _registrar(entries: dict[str, Registration], kind: str, record_type: type,
               plugin: str, enabled_by_user: set[str]):
    def register(record: Any) -> None:
        if not isinstance(record, record_type):
            raise PluginError(
                f"plugin '{plugin}' registered a {type(record).__name__} as a {kind}; "
                f"expected onnxport.{record_type.__name__}"
            )
        if not isinstance(record.name, str) or not _NAME.match(record.name):
            raise PluginError(
                f"plugin '{plugin}' registered a {kind} named {record.name!r}; names are "
                "lower-case letters, digits, '-', '_' and '.'"
            )
        if record.name in entries:
            raise PluginError(
                f"{kind} '{record.name}' is registered twice: by plugin "
                f"'{entries[record.name].plugin}' and by plugin '{plugin}'",
                "uninstall one of them, or leave one out with " + SELECTION_VARIABLE,
            )
        enabled = getattr(record, "enabled", True)
        reason = getattr(record, "disabled_reason", "")
        if not enabled and not reason.strip():
            raise PluginError(
                f"plugin '{plugin}' registered {kind} '{record.name}' as disabled "
                "without a reason",
                "set disabled_reason to say why and how to enable it",
            )
        missing: tuple[str, ...] = ()
        if enabled or record.name in enabled_by_user:
            requires = getattr(record, "requires", Requirements())
            missing = missing_modules(requires)
            reason = missing_requirement(requires) if missing else ""
            enabled = not missing
        entries[record.name] = Registration(kind, record, plugin, enabled, reason, missing)

    return register


def _distribution(ep: importlib.metadata.EntryPoint) -> str:
    return ep.dist.name if ep.dist else "(unknown distribution)"


def _parse_selection(selection: str | None,
                     found: dict[str, importlib.metadata.EntryPoint]) -> set[str]:
    if selection is None:
        return set(found)
    names = {part.strip() for part in selection.split(",") if part.strip()}
    if not names:
        return {n for n, ep in found.items() if _distribution(ep) == BUILTIN_DISTRIBUTION}
    unknown = sorted(names - set(found))
    if unknown:
        raise PluginError(
            f"{SELECTION_VARIABLE} names plugins that are not installed: "
            f"{', '.join(unknown)}",
            f"installed plugins: {', '.join(sorted(found)) or 'none'}",
        )
    return names


_default_host: PluginHost | None = None


def default_host() -> PluginHost:
    """The process-wide host, built on first use from the installed entry points."""
    global _default_host
    if _default_host is None:
        _default_host = PluginHost()
    return _default_host
