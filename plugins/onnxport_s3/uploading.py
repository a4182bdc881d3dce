"""`publish`: upload an artifact as a new version PREFIX/NAME/vYYYYMMDD_HHMMSS/, check
every stored object, then write the completion marker, last. A failure removes what it
can of the partial upload; without the marker the version never counts either way."""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import mimetypes
from typing import Any

from onnxport.errors import VerificationFailed
from onnxport.records import PublishRequest, PublishResult

from .checking import verify_object
from .client import (Connection, S3PublishError, boto_errors, connect, explain,
                     is_boto_error, part_size, transfer_config)
from .files import ArtifactFile, artifact_files
from .locations import MARKER, MARKER_FORMAT, ascii_value, b64, join, parse_uri
from .settings import settings_from
from .versions import ensure_bucket, find_published, free_version

log = logging.getLogger("onnxport.s3")


def metadata(item: ArtifactFile, request: PublishRequest, version: str,
             artifact_sha256: str) -> dict[str, str]:
    import onnxport

    source = (request.manifests[0].get("source") or {}) if request.manifests else {}
    meta = {
        "sha256": item.sha256,
        "size": str(item.size),
        "source-framework": source.get("framework") or "",
        "framework-version": source.get("framework_version") or "",
        "onnxport-version": onnxport.__version__,
        "artifact": request.name,
        "artifact-version": version,
        "artifact-sha256": artifact_sha256,
    }
    if item.target:
        meta["target"] = item.target
    return {k: ascii_value(v) for k, v in meta.items() if v}


def content_type(path: str) -> str:
    if path.endswith(".onnx") or path.endswith(".data") or path.endswith(".tflite"):
        return "application/octet-stream"
    return mimetypes.guess_type(path)[0] or "application/octet-stream"


def cleanup(conn: Connection, bucket: str, keys: list[str]) -> bool:
    """Best effort: remove what a failed publish uploaded. Without a marker the version
    is incomplete whether this works or not."""
    if not keys:
        return True
    try:
        conn.client.delete_objects(Bucket=bucket, Delete={
            "Objects": [{"Key": k} for k in keys], "Quiet": True})
        return True
    except Exception as error:  # the server may be gone: that is why we are here
        log.debug("could not remove the %d objects of the incomplete upload (%s)",
                  len(keys), type(error).__name__)
        return False


def publish(request: PublishRequest) -> PublishResult:
    import onnxport
    from onnxport.artifact.names import checked_name
    from onnxport.artifact.publishing import artifact_digest

    settings = settings_from(request.options, f"publishing to {request.uri}")
    bucket, prefix = parse_uri(request.uri)
    home = join(prefix, checked_name(request.name, "the artifact's name"))
    files = artifact_files(request)  # read and confined before anything is sent
    conn = connect(settings)
    created_bucket = ensure_bucket(conn, bucket, settings.create_bucket)
    digest = artifact_digest(request.manifests)
    artifact_sha256 = hashlib.sha256(digest.encode()).hexdigest()

    if not settings.force and not created_bucket:
        try:
            existing = find_published(conn, bucket, home, artifact_sha256)
        except boto_errors() as error:
            raise explain(error, conn, f"listing s3://{bucket}/{home}/", bucket) from None
        if existing:
            return PublishResult(
                uri=f"s3://{bucket}/{home}/{existing}", created=False,
                details={"reason": f"the same artifact (sha256 {artifact_sha256[:12]}...) "
                                   f"is already published as {existing}",
                         "endpoint": conn.endpoint})

    version = free_version(conn, bucket, home)
    version_key = join(home, version)
    transfer = transfer_config(settings)
    uploaded: list[str] = []
    checks: dict[str, str] = {}
    multipart: list[str] = []
    current = ""
    try:
        for item in files:
            key = join(version_key, item.path)
            current = f"uploading {item.path} to s3://{bucket}/{key}"
            log.info("uploading %s (%d bytes) to s3://%s/%s", item.path, item.size, bucket,
                     key)
            extra: dict[str, Any] = {
                "Metadata": metadata(item, request, version, artifact_sha256),
                "ContentType": content_type(item.path),
            }
            if settings.checksum == "sha256":
                extra["ChecksumAlgorithm"] = "SHA256"
            uploaded.append(key)  # a failed upload may still have left it
            conn.client.upload_file(str(item.local), bucket, key, ExtraArgs=extra,
                                    Config=transfer)
            if part_size(settings, item.size):
                multipart.append(item.path)
        for item in files:
            key = join(version_key, item.path)
            current = f"checking s3://{bucket}/{key}"
            checks[item.path] = verify_object(conn, bucket, key, item)
        marker = {
            "format": MARKER_FORMAT,
            "name": request.name,
            "version": version,
            "artifact_sha256": artifact_sha256,
            "published": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"),
            "onnxport": onnxport.__version__,
            "targets": sorted({m["target"]["name"] for m in request.manifests}),
            "files": [{"path": f.path, "bytes": f.size, "sha256": f.sha256}
                      for f in files],
        }
        body = json.dumps(marker, indent=1).encode()
        current = f"writing the completion marker s3://{bucket}/{version_key}/{MARKER}"
        args: dict[str, Any] = {"Bucket": bucket, "Key": join(version_key, MARKER),
                                "Body": body, "ContentType": "application/json",
                                "Metadata": {"artifact-sha256": artifact_sha256}}
        if settings.checksum == "sha256":
            args["ChecksumSHA256"] = b64(hashlib.sha256(body).hexdigest())
        uploaded.append(args["Key"])  # an answer lost on the way may hide a stored marker
        conn.client.put_object(**args)
    except BaseException as error:
        removed = cleanup(conn, bucket, uploaded)
        if not isinstance(error, Exception):
            raise
        state = ("the objects already uploaded were removed" if removed else
                 "objects already uploaded may remain")
        incomplete = (f"No completion marker was written, so this version is incomplete "
                      f"and onnxport pull refuses it ({state})")
        if isinstance(error, VerificationFailed):
            raise VerificationFailed(f"{error.message}. {incomplete}", error.hint) from None
        reason = explain(error, conn, current, bucket) if is_boto_error(error) else error
        raise S3PublishError(
            f"publishing {request.name} to s3://{bucket}/{version_key} failed: "
            f"{getattr(reason, 'message', reason)}. {incomplete}",
            getattr(reason, "hint", None) or "publish again") from None
    log.info("published %s as s3://%s/%s", request.name, bucket, version_key)
    return PublishResult(
        uri=f"s3://{bucket}/{version_key}",
        details={"endpoint": conn.endpoint, "bucket": bucket, "version": version,
                 "objects": len(files) + 1, "bytes": sum(f.size for f in files),
                 "multipart": multipart, "verified": checks,
                 "artifact_sha256": artifact_sha256, "created_bucket": created_bucket})
