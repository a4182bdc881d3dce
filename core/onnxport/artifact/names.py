"""The one rule for a name that becomes a path: a model file, an artifact directory, a
registry folder, an S3 key, an MLflow model name.

Letters, digits, `_`, `.` and `-`, starting with a letter or digit: no `/`, no `..`, no
absolute path, nothing a shell or a URL treats specially. A name from a source is made
safe (`safe_name`); a name from an artifact or a request is refused if it is not
(`checked_name`): it is untrusted, and silently changing it would publish under a name
nobody asked for.
"""

from __future__ import annotations

import re

from onnxport.errors import BadInput

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def safe_name(text: str) -> str:
    """`text` made into a name: other characters become `_` ("model" if none is left)."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._-")[:128]
    return cleaned or "model"


def checked_name(name: object, what: str) -> str:
    """`name` if it follows the rule, else a BadInput that says why."""
    if not isinstance(name, str) or not NAME.match(name) or ".." in name:
        raise BadInput(f"{what} {name!r} is not a safe name: names are letters, digits, "
                       "'_', '.' and '-' (no '/', no '..', at most 128 characters)",
                       "convert again with --name NAME")
    return name
