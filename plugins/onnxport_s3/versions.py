"""What the store holds: the bucket, the versions under PREFIX/NAME/, and their
completion markers. A version without a valid marker is never complete."""

from __future__ import annotations

import json
import logging
from typing import Any

from .client import Connection, S3PublishError, boto_errors, code, explain, original
from .locations import MARKER, MARKER_FORMAT, VERSION, join, version_order

log = logging.getLogger("onnxport.s3")


def ensure_bucket(conn: Connection, bucket: str, create: bool) -> bool:
    """True if the bucket was created. SeaweedFS (and some others) create buckets on the
    first PUT, so the check is explicit: a missing bucket is an error unless asked."""
    client = conn.client
    try:
        client.head_bucket(Bucket=bucket)
        return False
    except boto_errors() as error:
        if code(original(error)) not in ("404", "NoSuchBucket", "NotFound"):
            raise explain(error, conn, f"checking bucket {bucket!r}", bucket) from None
    if not create:
        raise S3PublishError(f"bucket {bucket!r} does not exist at S3 endpoint "
                             f"{conn.endpoint}", "create it, or pass --create-bucket")
    try:
        region = client.meta.region_name
        args: dict[str, Any] = {"Bucket": bucket}
        if region and region not in ("us-east-1", "aws-global") and "amazonaws" in str(
                client.meta.endpoint_url):
            args["CreateBucketConfiguration"] = {"LocationConstraint": region}
        client.create_bucket(**args)
    except boto_errors() as error:
        raise explain(error, conn, f"creating bucket {bucket!r}", bucket) from None
    log.info("created bucket %s at %s", bucket, conn.endpoint)
    return True


def version_prefixes(conn: Connection, bucket: str, home: str) -> list[str]:
    """Version names under HOME/, newest first (complete or not)."""
    names = []
    paginator = conn.client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=home + "/", Delimiter="/"):
        for entry in page.get("CommonPrefixes", []) or []:
            name = entry["Prefix"][len(home) + 1:].strip("/")
            if VERSION.match(name):
                names.append(name)
    return sorted(names, key=version_order, reverse=True)


def read_marker(conn: Connection, bucket: str, version_key: str) -> dict[str, Any] | None:
    """The completion marker of a version, or None if the version is not complete."""
    try:
        body = conn.client.get_object(Bucket=bucket, Key=join(version_key, MARKER))["Body"]
        marker = json.loads(body.read())
    except boto_errors() as error:
        if code(original(error)) in ("NoSuchKey", "404", "NotFound"):
            return None
        raise explain(error, conn, f"reading s3://{bucket}/{version_key}/{MARKER}",
                      bucket) from None
    except ValueError:
        return None  # not ours, or damaged: never counts as complete
    if not isinstance(marker, dict) or marker.get("format") != MARKER_FORMAT:
        return None
    return marker


def find_published(conn: Connection, bucket: str, home: str,
                   artifact_sha256: str) -> str | None:
    """The newest complete version under HOME/ that holds this artifact, if any."""
    for version in version_prefixes(conn, bucket, home):
        marker = read_marker(conn, bucket, join(home, version))
        if marker and marker.get("artifact_sha256") == artifact_sha256:
            return version
    return None


def free_version(conn: Connection, bucket: str, home: str) -> str:
    """A version name under HOME/ nothing uses yet: vYYYYMMDD_HHMMSS[_N]."""
    from onnxport.artifact.publishing import version_tag

    base = version_tag()
    for n in range(1, 1000):
        name = base if n == 1 else f"{base}_{n}"
        try:
            found = conn.client.list_objects_v2(
                Bucket=bucket, Prefix=join(home, name) + "/", MaxKeys=1)
        except boto_errors() as error:
            raise explain(error, conn, f"listing s3://{bucket}/{home}/", bucket) from None
        if not found.get("KeyCount"):
            return name
    raise S3PublishError(f"s3://{bucket}/{home}/{base}_* are all taken")
