"""`pull`: fetch a complete version into the core's empty staging directory, each file
checked against the sha256 its completion marker recorded. The marker is read from the
store, so it is untrusted: a path it names is written only inside the destination
(`onnxport.artifact.reading.confined`), and a damaged marker is refused."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from onnxport.artifact.reading import ArtifactError, confined, sha256_of
from onnxport.errors import BadInput, VerificationFailed

from .client import Connection, boto_errors, connect, explain, transfer_config
from .locations import MARKER, VERSION, join, parse_uri
from .settings import Settings
from .versions import read_marker, version_prefixes


def resolve_version(conn: Connection, bucket: str, key: str) -> tuple[str, dict[str, Any]]:
    """The version key a pull URI names and its marker: `.../NAME/vTS` exactly, or
    `.../NAME` for the newest complete version."""
    if VERSION.match(PurePosixPath(key).name or ""):
        marker = read_marker(conn, bucket, key)
        if marker is None:
            raise BadInput(f"s3://{bucket}/{key} is not a complete published version (no "
                           f"{MARKER} marker: the upload did not finish, or nothing is "
                           "there)", "publish the artifact again")
        return key, marker
    try:
        versions = version_prefixes(conn, bucket, key)
    except boto_errors() as error:
        raise explain(error, conn, f"listing s3://{bucket}/{key}/", bucket) from None
    for version in versions:
        marker = read_marker(conn, bucket, join(key, version))
        if marker is not None:
            return join(key, version), marker
    incomplete = f" ({len(versions)} incomplete)" if versions else ""
    raise BadInput(f"s3://{bucket}/{key} has no complete published version{incomplete}",
                   "give s3://BUCKET/PREFIX/NAME or .../NAME/vYYYYMMDD_HHMMSS as "
                   "onnxport publish printed it")


def marker_files(marker: dict[str, Any], where: str) -> list[tuple[str, int, str]]:
    """(path, bytes, sha256) of every file the marker lists, refused if malformed."""
    files = marker.get("files")
    entries = []
    for entry in files if isinstance(files, list) else [None]:
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str) \
                or type(entry.get("bytes")) is not int \
                or not isinstance(entry.get("sha256"), str):
            raise VerificationFailed(f"the completion marker of {where} is damaged "
                                     f"(files entry {entry!r})", "publish the artifact "
                                     "again")
        entries.append((entry["path"], entry["bytes"], entry["sha256"]))
    return entries


def pull(uri: str, destination: Path) -> None:
    settings = Settings()
    bucket, key = parse_uri(uri)
    conn = connect(settings)
    try:
        conn.client.head_bucket(Bucket=bucket)
    except boto_errors() as error:
        raise explain(error, conn, f"checking bucket {bucket!r}", bucket) from None
    version_key, marker = resolve_version(conn, bucket, key)
    where = f"s3://{bucket}/{version_key}"
    transfer = transfer_config(settings)
    for rel, size, sha256 in marker_files(marker, where):
        try:
            local = confined(destination, rel, f"the marker of {where}")
        except ArtifactError:
            raise VerificationFailed(f"the marker of {where} names an unsafe path "
                                     f"{rel!r}", "refusing to pull it") from None
        try:
            local.parent.mkdir(parents=True, exist_ok=True)
            conn.client.download_file(bucket, join(version_key, rel), str(local),
                                      Config=transfer)
        except boto_errors() as error:
            raise explain(error, conn, f"downloading {where}/{rel}", bucket) from None
        except OSError as error:  # e.g. the marker names "a" and "a/b"
            raise VerificationFailed(f"cannot write {rel!r} of {where} ({error})",
                                     "publish the artifact again") from None
        if local.stat().st_size != size or sha256_of(local) != sha256:
            raise VerificationFailed(f"{where}/{rel} does not match the sha256 its "
                                     "completion marker recorded",
                                     "publish the artifact again")
