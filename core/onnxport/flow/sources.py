"""From what the user typed or passed to a `Source`, and from a `Source` to a backend.

A CLI source is a path (file or directory) or a factory, `package.module:function` or
`path/to/file.py:function`. The factory is user code the user asked to run: it is
imported and called here, so backends only ever see objects and paths. It returns the
model, `(model, example_inputs)` or `(model, example_inputs, output_names)`.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
import time
from pathlib import Path
from typing import Any

from onnxport.errors import BadInput, Crashed, MissingDependency, PluginError
from onnxport.host import PluginHost
from onnxport.records import Backend, Source

_FRAMEWORK_EXTRAS = {"torch": "torch", "tensorflow": "keras", "keras": "keras",
                     "onnx": "onnx", "onnxruntime": "runtime"}


def source_spec(text: str, weights: Path | None = None) -> Source:
    """A SOURCE as the user typed it: an existing path, else a factory recorded by name
    (kind "factory", called later by `resolve_source`), else an error. Runs no code."""
    path = Path(text)
    if path.exists():
        return Source(kind="path", value=path, origin=text, weights=weights)
    module, sep, function = text.rpartition(":")
    if sep and module and function.isidentifier():
        return Source(kind="factory", value=text, origin=text, weights=weights)
    raise BadInput(f"{text} does not exist",
                   "give a model file, or a factory as package.module:function "
                   "or path/to/file.py:function")


def resolve_source(source: Source) -> Source:
    """A source a backend can look at: a factory is imported and called here."""
    if source.kind != "factory":
        return source
    return source_from_object(call_factory(source.origin), origin=source.origin,
                              weights=source.weights)


def source_from_text(text: str, weights: Path | None = None) -> Source:
    """A SOURCE resolved at once: for commands that load it straight away."""
    return resolve_source(source_spec(text, weights))


def source_from_object(obj: Any, *, origin: str, weights: Path | None = None,
                       example_inputs: Any = None, output_names: Any = None) -> Source:
    """Unpack what a factory (or a Python caller) handed over."""
    if isinstance(obj, tuple) and len(obj) in (2, 3) and not _is_named_tuple(obj):
        model, example_inputs, *rest = obj
        if rest:
            output_names = rest[0]
    else:
        model = obj
    names = tuple(output_names) if output_names is not None else None
    return Source(kind="object", value=model, origin=origin, weights=weights,
                  example_inputs=example_inputs, output_names=names)


def call_factory(text: str) -> Any:
    module_name, _, function_name = text.rpartition(":")
    module = import_factory_module(module_name, text)
    factory = getattr(module, function_name, None)
    if not callable(factory):
        available = sorted(n for n, v in vars(module).items()
                           if callable(v) and not n.startswith("_")
                           and getattr(v, "__module__", None) == module.__name__)
        raise BadInput(f"factory {text}: {module_name} has no function {function_name!r}",
                       f"functions there: {', '.join(available) or 'none'}")
    try:
        return factory()
    except SystemExit as exc:
        raise _exited(exc, f"factory {text}") from None
    except ModuleNotFoundError as exc:
        raise _missing_module(exc, text) from exc
    except Exception as exc:
        raise BadInput(f"factory {text} raised {type(exc).__name__}: {exc}",
                       "fix the factory; run with --debug for the traceback") from exc


def import_factory_module(module_name: str, text: str):
    """Import `module_name` (a dotted name, or a path/file.py) for the factory `text`."""
    if module_name.endswith(".py") or "/" in module_name:
        path = Path(module_name)
        if not path.is_file():
            raise BadInput(f"factory {text}: {path} does not exist")
        unique = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
        name = f"onnxport_factory_{path.stem}_{unique}"
        if name in sys.modules:
            return sys.modules[name]
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except SystemExit as exc:
            del sys.modules[name]
            raise _exited(exc, f"factory {text}: importing {path}") from None
        except ModuleNotFoundError as exc:
            del sys.modules[name]
            raise _missing_module(exc, text) from exc
        except Exception as exc:
            del sys.modules[name]
            raise BadInput(f"factory {text}: importing {path} raised "
                           f"{type(exc).__name__}: {exc}") from exc
        return module
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        return importlib.import_module(module_name)
    except SystemExit as exc:
        raise _exited(exc, f"factory {text}: importing {module_name}") from None
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise BadInput(f"factory {text}: there is no module {module_name!r}",
                           "check the spelling, or run from the directory that holds it, "
                           "or use path/to/file.py:function") from exc
        raise _missing_module(exc, text) from exc
    except Exception as exc:
        raise BadInput(f"factory {text}: importing {module_name} raised "
                       f"{type(exc).__name__}: {exc}") from exc


def _exited(exc: SystemExit, what: str) -> Crashed:
    """A factory that calls sys.exit() is a failure, whatever code it exits with."""
    return Crashed(f"{what} called sys.exit({exc.code!r}) instead of returning a model",
                   "a factory returns the model; it must not exit the process")


def _missing_module(exc: ModuleNotFoundError, text: str) -> Exception:
    top = (exc.name or "").split(".")[0]
    if top in _FRAMEWORK_EXTRAS:
        return MissingDependency(top, _FRAMEWORK_EXTRAS[top], f"the factory {text}")
    if not exc.name:  # raised by the factory's own code, not by a missing package
        return BadInput(f"factory {text} raised ModuleNotFoundError: {exc}",
                        "fix the factory; run with --debug for the traceback")
    return BadInput(f"factory {text} needs module {exc.name!r}, which is not installed",
                    f"install it (pip install {top}), or fix the import in the factory")


def pick_backend(host: PluginHost, source: Source, name: str | None = None) -> Backend:
    """The backend the user named, else the first enabled one that can load the source."""
    if name is not None:
        backend = host.get("backend", name)
        if not backend.can_load(source):
            raise BadInput(f"backend '{name}' cannot load {source.origin}",
                           f"it accepts {backend.accepts}")
        return backend
    registrations = host.registrations("backend").values()
    for entry in registrations:
        if not entry.enabled:
            host.trace(f"backend {entry.name} ({entry.plugin}) not asked: {entry.reason}")
        elif _claims(host, entry, source):
            return entry.record
    for entry in registrations:
        if not entry.enabled and _claims(host, entry, source):
            host.get("backend", entry.name)  # raises: what is missing, or why it is off
    tried = "; ".join(f"{e.name}: {e.record.accepts}" for e in registrations) or "none"
    what = "file" if source.kind == "path" else type(source.value).__name__
    raise BadInput(f"no backend can load {source.origin} ({what})",
                   f"backends tried: {tried}")


def _claims(host: PluginHost, entry, source: Source) -> bool:
    started = time.perf_counter()
    try:
        claimed = bool(entry.record.can_load(source))
    except Exception as exc:
        raise PluginError(f"plugin '{entry.plugin}' raised in can_load of backend "
                          f"'{entry.name}': {type(exc).__name__}: {exc}") from exc
    host.trace(f"backend {entry.name} ({entry.plugin}) can_load({source.origin}) -> "
               f"{claimed}", started)
    return claimed


def _is_named_tuple(obj: Any) -> bool:
    return hasattr(obj, "_fields")
