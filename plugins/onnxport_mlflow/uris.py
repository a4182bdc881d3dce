"""`mlflow://` URIs. Pure string work: no mlflow."""

from __future__ import annotations

from urllib.parse import unquote

from onnxport.errors import BadInput


def parse_uri(uri: str) -> tuple[str, str | None, str | None]:
    """`mlflow://NAME[/VERSION|@ALIAS]` -> (name, version, alias). Parsed by hand: a
    URL parser would read NAME@ALIAS as user@host and lowercase the alias."""
    prefix = "mlflow://"
    if not uri.startswith(prefix) or len(uri) == len(prefix):
        raise BadInput(f"{uri!r} is not an mlflow://REGISTERED_MODEL_NAME URI")
    rest = uri[len(prefix):].rstrip("/")
    version = alias = None
    if "@" in rest:
        rest, alias = rest.rsplit("@", 1)
    elif "/" in rest:
        head, last = rest.rsplit("/", 1)
        if last.isdigit() or last == "latest":
            rest, version = head, last
    name = unquote(rest)
    if not name:
        raise BadInput(f"{uri!r} names no registered model")
    return name, version, alias
