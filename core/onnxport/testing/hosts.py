"""Hosts isolated from installed third-party plugins, and the work directories and
plugin objects the checks use."""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from onnxport.host import PluginHost
from onnxport.registry import KINDS

DEFAULT_SELECTION = "providers"


def fresh_host(selection: str | None = DEFAULT_SELECTION) -> PluginHost:
    """A host isolated from installed third-party plugins: only the named built-in
    plugins (entry point names, comma-separated; "" for every built-in, None for none)."""
    if selection is None:
        return PluginHost(load_entry_points=False)
    return PluginHost(selection=selection)


try:  # a fixture for users' conftest.py; pytest is not a dependency of onnxport
    import pytest as _pytest
except ImportError:  # pragma: no cover
    onnxport_host = None
else:
    @_pytest.fixture
    def onnxport_host() -> Iterator[PluginHost]:
        """A fresh PluginHost with the built-in `providers` plugin only."""
        yield fresh_host()


def as_plugin(plugin_or_record: Any) -> Any:
    """A plugin object for a bare Backend / Pass / Runner / Target / Publisher record."""
    from onnxport.host import hookimpl

    record = plugin_or_record
    hook = next((h for h, (t, _) in KINDS.items() if isinstance(record, t)), None)
    if hook is None:
        return plugin_or_record

    class _Single:
        def __init__(self, record: Any):
            self.record = record

    def register_it(self, register):
        register(self.record)

    setattr(_Single, hook, hookimpl(register_it))  # pluggy looks hooks up by name
    return _Single(record)


def name_for_plugin(plugin: Any, name: str | None) -> str:
    if name:
        return name
    base = getattr(plugin, "__name__", None) or type(plugin).__name__
    return "under-test-" + base.rsplit(".", 1)[-1].lower()


@contextmanager
def work_dir_for(work_dir: Path | None) -> Iterator[Path]:
    if work_dir is not None:
        Path(work_dir).mkdir(parents=True, exist_ok=True)
        yield Path(work_dir)
        return
    with tempfile.TemporaryDirectory(prefix="onnxport-conformance-") as tmp:
        yield Path(tmp)
