"""Where things are in the store: `s3://` URIs, object keys, version names and the
completion marker's name. Pure string work: no boto3."""

from __future__ import annotations

import base64
import re
from typing import Any
from urllib.parse import urlparse

from onnxport.errors import BadInput

MARKER = "_COMPLETE"
MARKER_FORMAT = "onnxport-s3-version/1"
VERSION = re.compile(r"^v\d{8}_\d{6}(?:_\d+)?$")


def parse_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` -> ("bucket", "some/prefix")."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise BadInput(f"{uri!r} is not an s3://BUCKET[/PREFIX] URI")
    return parsed.netloc, parsed.path.strip("/")


def join(*parts: str) -> str:
    """Key parts joined by `/`, empty parts and stray slashes left out."""
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


def version_order(name: str) -> tuple[str, int]:
    """v20250101_120000 < v20250101_120000_2 < v20250101_120001."""
    parts = name[1:].split("_")
    return ("_".join(parts[:2]), int(parts[2]) if len(parts) > 2 else 1)


def b64(digest_hex: str) -> str:
    """A hex digest as S3 checksum headers write it."""
    return base64.b64encode(bytes.fromhex(digest_hex)).decode()


def ascii_value(value: Any) -> str:
    """S3 user metadata must be printable ASCII."""
    text = str(value)
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in text)[:256]
