"""Did the store keep what was sent? Each uploaded object checked against the file's
sha256: by the SHA-256 checksum the server computed on receipt (per part for multipart
objects), else by reading it back and hashing it."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from onnxport.errors import VerificationFailed

from .client import Connection, S3PublishError, part_size
from .files import ArtifactFile
from .settings import MiB


def local_checksums(path: Path, part: int | None) -> tuple[str, str]:
    """(sha256 hex of the file, the S3 SHA-256 checksum value for how it was uploaded)."""
    whole = hashlib.sha256()
    parts: list[bytes] = []
    with path.open("rb") as handle:
        while True:
            block = handle.read(part or MiB)
            if not block:
                break
            whole.update(block)
            if part:
                parts.append(hashlib.sha256(block).digest())
    if not part:
        return whole.hexdigest(), base64.b64encode(whole.digest()).decode()
    composite = base64.b64encode(hashlib.sha256(b"".join(parts)).digest()).decode()
    return whole.hexdigest(), f"{composite}-{len(parts)}"


def download_sha256(conn: Connection, bucket: str, key: str) -> tuple[str, int]:
    body = conn.client.get_object(Bucket=bucket, Key=key)["Body"]
    digest, size = hashlib.sha256(), 0
    for block in body.iter_chunks(MiB):
        digest.update(block)
        size += len(block)
    return digest.hexdigest(), size


def verify_object(conn: Connection, bucket: str, key: str, item: ArtifactFile) -> str:
    """Check the stored object against the expected sha256; returns how it was checked."""
    settings = conn.settings
    head = conn.client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    if head.get("ContentLength") != item.size:
        raise VerificationFailed(f"s3://{bucket}/{key} holds {head.get('ContentLength')} "
                                 f"bytes, {item.path} has {item.size}", "publish again")
    stored = head.get("ChecksumSHA256")
    if settings.verify != "download" and stored:
        part = part_size(settings, item.size) if "-" in stored else None
        local_hex, expected = local_checksums(item.local, part)
        if local_hex != item.sha256:
            raise VerificationFailed(f"{item.path} changed while it was being published",
                                     "publish again")
        if stored == expected:
            return "sha256 (server)" if part is None else "sha256 of parts (server)"
        if settings.verify == "checksum" or part is None:
            raise VerificationFailed(
                f"s3://{bucket}/{key} does not match {item.path}: the server's SHA-256 is "
                f"{stored}, the file's {expected}", "publish again")
        # A composite checksum over other part boundaries: let the bytes decide.
    elif settings.verify == "checksum":
        raise S3PublishError(f"S3 endpoint {conn.endpoint} returned no SHA-256 checksum "
                             f"for s3://{bucket}/{key}",
                             "use --publish-option verify=download with this store")
    digest, size = download_sha256(conn, bucket, key)
    if digest != item.sha256 or size != item.size:
        raise VerificationFailed(f"s3://{bucket}/{key} read back does not match "
                                 f"{item.path} (sha256 {digest[:16]}... vs "
                                 f"{item.sha256[:16]}...)", "publish again")
    return "download"
