"""The plugin host: finds plugins, lets pluggy call their hooks, and owns the registry.

Built-in plugins and third-party ones are both found through the `onnxport` entry
point group; the only difference the host knows is which distribution they come from
(shown by `onnxport plugins`). `ONNXPORT_PLUGINS` restricts what is loaded:

- unset: every installed plugin;
- set and empty (`ONNXPORT_PLUGINS=`): only the plugins built into onnxport;
- `ONNXPORT_PLUGINS=torch,providers`: exactly the named plugins (entry point names).

`ONNXPORT_ENABLE=tflite,other` turns on records that their plugin registers disabled by
default (with a reason), for every request of the process.

Hooks are called by pluggy, so its ordering (`tryfirst`, `trylast`) and wrappers
(`wrapper=True`, `hookwrapper=True`) work as documented. The host watches every call
through pluggy's monitoring: `ONNXPORT_TRACE=1` logs each call with the plugins that
answered and the time it took, and an exception a plugin raises is re-raised as a
`PluginError` that names the plugin and the hook.

A conversion never changes the host: it works on a `view()` that adds the request's own
enables, the targets its config file defines, and observers (a progress display), so one
process can run many conversions, one after another or at once.
"""

from __future__ import annotations

import copy
import importlib
import importlib.metadata
import os
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType, TracebackType
from typing import Any, Iterable, Iterator, Sequence

import pluggy

from onnxport import hookspecs
from onnxport.errors import BadInput, MissingDependency, OnnxportError, PluginError
from onnxport.registry import (KINDS, Registration, missing_requirement, record_problems,
                               registration)

ENTRY_POINT_GROUP = "onnxport"
BUILTIN_DISTRIBUTION = "onnxport"
SELECTION_VARIABLE = "ONNXPORT_PLUGINS"
ENABLE_VARIABLE = "ONNXPORT_ENABLE"
TRACE_VARIABLE = "ONNXPORT_TRACE"
# The core's own behaviour that is written as a plugin, always loaded (not an entry
# point, so ONNXPORT_PLUGINS cannot leave it out).
CORE_PLUGINS = {"core": "onnxport.cli.commands"}

hookimpl = pluggy.HookimplMarker("onnxport")

__all__ = ["PluginHost", "PluginInfo", "Registration", "default_host", "hookimpl",
           "missing_requirement"]


@dataclass
class PluginInfo:
    """One loaded plugin, as `onnxport plugins` shows it."""

    name: str
    module: str
    distribution: str
    version: str
    builtin: bool
    hooks: list[str] = field(default_factory=list)


class PluginHost:
    """A pluggy PluginManager plus the registry of backends, runners, targets, passes
    and publishers, seen through one request's enables, config and observers."""

    def __init__(self, *, load_entry_points: bool = True, selection: str | None = None,
                 enable: Iterable[str] | None = None):
        self.pm = pluggy.PluginManager("onnxport")
        self.pm.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}
        if enable is None:
            enable = [n.strip() for n in os.environ.get(ENABLE_VARIABLE, "").split(",")]
        self.enabled_by_user: frozenset[str] = frozenset(n for n in enable if n)
        self.tracing = os.environ.get(TRACE_VARIABLE, "") not in ("", "0")
        self._calls = threading.local()  # start times of the hook calls in progress
        self.pm.add_hookcall_monitoring(self._before_call, self._after_call)
        self._collected: list[tuple[str, Any, str]] | None = None  # (kind, record, plugin)
        self._overrides: tuple[tuple[str, Any, str], ...] = ()  # a request's own records
        self._observers: tuple[Any, ...] = ()  # objects whose hooks this view's calls add
        self._registry: dict[str, dict[str, Registration]] | None = None
        for name, module in CORE_PLUGINS.items():
            self.register(importlib.import_module(module), name,
                          distribution=BUILTIN_DISTRIBUTION, version=_version())
        if load_entry_points:
            if selection is None:
                selection = os.environ.get(SELECTION_VARIABLE)
            self._load_entry_points(selection)
        self.check_pending()

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
        self._forget()

    def unregister(self, name: str) -> None:
        self.pm.unregister(name=name)
        self.infos.pop(name, None)
        self._forget()

    def _forget(self) -> None:
        self._collected = None
        self._registry = None

    @contextmanager
    def registered(self, plugin: Any, name: str) -> Iterator[None]:
        """Register a plugin for the duration of a `with` block (tests, one-off hooks)."""
        self.register(plugin, name)
        try:
            self.check_pending()
            yield
        finally:
            self.unregister(name)

    def check_pending(self) -> None:
        """Refuse a plugin that implements a hook onnxport does not have (a typo)."""
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginError(
                f"plugin '{self.pm.get_name(exc.plugin)}' implements a hook onnxport does "
                f"not have: {exc}",
                "see docs/hooks.md for the hook names",
            ) from exc

    # ------------------------------------------------------------------ views

    def view(self, *, enable: Iterable[str] = (),
             records: Iterable[tuple[str, Any, str]] = (),
             observers: Iterable[Any] = ()) -> "PluginHost":
        """This host as one request sees it; `self` is not changed.

        `enable` turns on records that are off by default (`--enable`); `records` are
        (kind, record, source) triples that stand beside or in place of the plugins'
        records of that name (the targets a config file defines); `observers` are
        objects whose hook methods are called with the plugins' on this view's calls
        (a progress display), without being registered.
        """
        self._records()  # collect once, so every view shares the plugins' answers
        view = copy.copy(self)
        view.enabled_by_user = self.enabled_by_user | frozenset(enable)
        view._overrides = self._overrides + tuple(records)
        view._observers = self._observers + tuple(observers)
        view._registry = None
        return view

    # ------------------------------------------------------------------ calling

    def call(self, hook_name: str, **kwargs: Any) -> list[Any]:
        """Call a hook through pluggy (with this view's observers); its results."""
        caller = getattr(self.pm.hook, hook_name)
        extra = [getattr(o, hook_name) for o in self._observers if hasattr(o, hook_name)]
        if extra:
            return caller.call_extra(extra, kwargs)
        return caller(**kwargs)

    def calling_plugin(self, hook_name: str) -> str:
        """The plugin whose implementation of `hook_name` is running now: how a
        `register` callable knows who registered a record."""
        impl = _impl_in(_stack(sys._getframe(1)), self._impls(hook_name))
        return _plugin_name(impl)

    def _impls(self, hook_name: str) -> list[Any]:
        return getattr(self.pm.hook, hook_name).get_hookimpls()

    def _before_call(self, hook_name: str, impls: Sequence[Any], kwargs: Any) -> None:
        if self.tracing:
            self._calls.__dict__.setdefault("started", []).append(time.perf_counter())

    def _after_call(self, outcome: pluggy.Result, hook_name: str, impls: Sequence[Any],
                    kwargs: Any) -> None:
        if self.tracing:
            started = self._calls.started.pop()
            answered = ", ".join(_plugin_name(i) for i in reversed(impls)) or "nobody"
            self.trace(f"{hook_name} <- {answered}", started)
        exc = outcome.exception
        if isinstance(exc, Exception) and not isinstance(exc, OnnxportError):
            plugin = _plugin_name(_impl_in(_traceback(exc.__traceback__), impls))
            error = PluginError(f"plugin '{plugin}' raised in {hook_name}: "
                                f"{type(exc).__name__}: {exc}")
            error.__cause__ = exc
            outcome.force_exception(error)

    def trace(self, what: str, started: float | None = None) -> None:
        """One `ONNXPORT_TRACE` line: a hook call, or a decision the core made from a
        plugin's answer (which backend claimed the source, whether a pass applies)."""
        if self.tracing:
            took = f" ({(time.perf_counter() - started) * 1000:.2f} ms)" if started else ""
            print(f"onnxport trace: {what}{took}", file=sys.stderr)

    # ------------------------------------------------------------------ registry

    def registrations(self, kind: str) -> dict[str, Registration]:
        """Every record of a kind ("backend", "runner", "target", "pass", "publisher")
        by name, with its state as this view sees it."""
        if self._registry is None:
            registry: dict[str, dict[str, Registration]] = {
                k: {} for _, k in KINDS.values()}
            for kind_, record, plugin in (*self._records(), *self._overrides):
                registry[kind_][record.name] = registration(kind_, record, plugin,
                                                            self.enabled_by_user)
            self._registry = registry
        return self._registry[kind]

    def _records(self) -> list[tuple[str, Any, str]]:
        """What the plugins register, collected once through pluggy and checked."""
        if self._collected is None:
            collected: list[tuple[str, Any, str]] = []
            for hook_name, (_, kind) in KINDS.items():
                taken: dict[str, str] = {}

                def register(record: Any, kind: str = kind, hook_name: str = hook_name,
                             taken: dict[str, str] = taken) -> None:
                    plugin = self.calling_plugin(hook_name)
                    problems = record_problems(kind, record, plugin, taken)
                    if problems:
                        rule, message = problems[0]
                        raise PluginError(message, "uninstall one of them, or leave one "
                                          f"out with {SELECTION_VARIABLE}"
                                          if rule == "duplicate-name" else None)
                    taken[record.name] = plugin
                    collected.append((kind, record, plugin))

                self.call(hook_name, register=register)
            self._collected = collected
        return self._collected

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


# ---------------------------------------------------------------------- attribution


def _stack(frame: FrameType | None) -> Iterator[FrameType]:
    while frame is not None:
        yield frame
        frame = frame.f_back


def _traceback(tb: TracebackType | None) -> Iterator[FrameType]:
    while tb is not None:
        yield tb.tb_frame
        tb = tb.tb_next


def _impl_in(frames: Iterable[FrameType], impls: Sequence[Any]) -> Any:
    """The hook implementation one of `frames` is running, found by its code object
    (and, for two instances of one plugin class, by `self`)."""
    by_code: dict[Any, list[Any]] = {}
    for impl in impls:
        code = getattr(impl.function, "__code__", None)
        if code is not None:
            by_code.setdefault(code, []).append(impl)
    for frame in frames:
        found = by_code.get(frame.f_code)
        if found:
            owner = frame.f_locals.get("self")
            return next((i for i in found if i.plugin is owner), found[0])
    return None


def _plugin_name(impl: Any) -> str:
    if impl is None:
        return "(unknown plugin)"
    if impl.plugin is None:  # an observer of one view, called but not registered
        owner = getattr(impl.function, "__self__", None)
        return f"observer {type(owner).__name__}" if owner is not None else "observer"
    return impl.plugin_name


# ---------------------------------------------------------------------- entry points


def _version() -> str:
    from onnxport import __version__

    return __version__


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
    """The process-wide host, built on first use from the installed entry points.
    Nothing changes it after loading: requests work on views of it."""
    global _default_host
    if _default_host is None:
        _default_host = PluginHost()
    return _default_host
