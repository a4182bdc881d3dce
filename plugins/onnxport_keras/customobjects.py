"""Custom objects a .keras file needs: `module:name` / `path/file.py:name` strings from
`--custom-object`, or a dict name -> object from Python, resolved to the dict Keras
takes."""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from onnxport.errors import BadInput
from onnxport.flow.sources import import_factory_module

HINT = ("give it as MODULE:NAME or path/to/file.py:NAME, e.g. "
        "my_project.losses:autopilot_loss")


def resolve_custom_objects(given: Any) -> dict[str, Any]:
    if not given:
        return {}
    if isinstance(given, Mapping):
        return {str(name): obj for name, obj in given.items()}
    items: Iterable[Any] = [given] if isinstance(given, str) else given
    resolved: dict[str, Any] = {}
    for item in items:
        if not isinstance(item, str):
            resolved[getattr(item, "__name__", repr(item))] = item
            continue
        name, obj = _import_object(item)
        for key in _keys_for(name, obj):
            resolved.setdefault(key, obj)
    return resolved


def _import_object(text: str) -> tuple[str, Any]:
    module_name, sep, name = text.rpartition(":")
    if not sep or not module_name or not name.isidentifier():
        raise BadInput(f"--custom-object {text!r} is not MODULE:NAME", HINT)
    try:
        module = import_factory_module(module_name, text)
    except BadInput as exc:  # its messages say "factory TEXT"; this is a custom object
        raise BadInput(exc.message.replace(f"factory {text}", f"--custom-object {text}", 1),
                       exc.hint) from exc
    if not hasattr(module, name):
        raise BadInput(f"--custom-object {text}: {module_name} has no {name!r}", HINT)
    return name, getattr(module, name)


def _keys_for(name: str, obj: Any) -> list[str]:
    """The names a .keras config may use for this object: the attribute, its __name__,
    and its registered name (`package>Name`) if it is registered with Keras."""
    keys = [name, getattr(obj, "__name__", name)]
    try:
        import keras

        registered = keras.saving.get_registered_name(obj)
        keys.append(registered)
    except Exception:
        pass
    return list(dict.fromkeys(k for k in keys if k))


def as_references(given: Mapping[str, Any]) -> list[str]:
    """`module:name` for each object of a dict, the form `--custom-object` takes and the
    manifest can record (so `onnxport verify` can import them again)."""
    return [f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', name)}"
            for name, obj in given.items()]
