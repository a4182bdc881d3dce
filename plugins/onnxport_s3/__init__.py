"""Built-in plugin: publish artifacts to S3-compatible object storage with boto3 (AWS S3,
MinIO, SeaweedFS, Ceph, ...) and pull them back.

Layout: `s3://BUCKET/PREFIX` receives one version per publish, every file of the
artifact kept together under it::

    PREFIX/NAME/vYYYYMMDD_HHMMSS/report.json, report.html, report.md
    PREFIX/NAME/vYYYYMMDD_HHMMSS/<target>/<name>.onnx, <target>/manifest.json
    PREFIX/NAME/vYYYYMMDD_HHMMSS/_COMPLETE     written last: the version is complete

A version without `_COMPLETE` (an upload that crashed or was interrupted) is never
pulled and never counts as "already published". Credentials come only from boto3's
standard chain (environment, shared credentials and config files, SSO, instance roles)
and are never written or logged; the endpoint from `--publish-option endpoint_url=`,
`AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`, or the profile's `endpoint_url`.

boto3 is imported inside the functions: `onnxport --help` must not pay for it.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import logging
import mimetypes
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Mapping
from urllib.parse import urlparse, urlunparse

from onnxport.errors import BadInput, VerificationFailed
from onnxport.host import hookimpl
from onnxport.records import Publisher, PublishRequest, PublishResult, Requirements

log = logging.getLogger("onnxport.s3")

MARKER = "_COMPLETE"
MARKER_FORMAT = "onnxport-s3-version/1"
VERSION = re.compile(r"^v\d{8}_\d{6}(?:_\d+)?$")
MiB = 1024 * 1024

# Keys this publisher reads. A plain key it does not know may belong to another
# publisher of the same command (`convert --publish s3://.. --publish mlflow://..` hands
# every publisher the same options); an unknown `s3.KEY` is an error.
OPTIONS = {
    "endpoint_url": "the S3 endpoint, e.g. http://minio:9000 (default: "
                    "AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, the profile's, else AWS)",
    "profile": "the AWS profile for credentials and settings (default: AWS_PROFILE)",
    "region": "the region (default: AWS_REGION / the profile's)",
    "addressing_style": "path, virtual or auto (default: botocore's)",
    "multipart_threshold": "files this large or larger go up in parts (default 8MiB)",
    "multipart_chunksize": "the size of each part (default 8MiB; S3 needs >= 5MiB)",
    "max_concurrency": "parts in flight at once (default 4)",
    "retries": "attempts per request, the first included (default 5)",
    "connect_timeout": "seconds (default 10)",
    "read_timeout": "seconds (default 60)",
    "verify": "auto (server SHA-256 checksums, else download), checksum, or download",
    "checksum": "sha256 (send x-amz-checksum-sha256, default) or off (stores without "
                "flexible checksums; then verify downloads)",
    "create_bucket": "create the bucket if it does not exist (--create-bucket)",
    "force": "publish again although the same artifact is there (--force)",
}
_IGNORED = {"run_id", "alias"}  # the CLI's MLflow options


class S3PublishError(BadInput):
    """The store refused, could not be reached, or did not keep what was sent."""


# --------------------------------------------------------------------------- settings


def _size(key: str, value: Any) -> int:
    if isinstance(value, int):
        return value
    text = str(value).strip()
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMG]i?B?|B)?", text, re.I)
    if not match:
        raise BadInput(f"s3 option {key}={value!r} is not a size",
                       "give bytes or a size such as 5MiB, 64MB, 1GB")
    unit = (match.group(2) or "B").upper().rstrip("B").rstrip("I")
    return int(float(match.group(1)) * {"": 1, "K": 1024, "M": MiB, "G": 1024 * MiB}[unit])


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _number(key: str, value: Any, kind=int):
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise BadInput(f"s3 option {key}={value!r} is not a number") from None
    if number <= 0:
        raise BadInput(f"s3 option {key}={value!r} must be positive")
    return number


@dataclass(frozen=True)
class Settings:
    endpoint_url: str | None = None
    profile: str | None = None
    region: str | None = None
    addressing_style: str | None = None
    multipart_threshold: int = 8 * MiB
    multipart_chunksize: int = 8 * MiB
    max_concurrency: int = 4
    retries: int = 5
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    verify: str = "auto"
    checksum: str = "sha256"
    create_bucket: bool = False
    force: bool = False

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> "Settings":
        values: dict[str, Any] = {}
        for key, value in options.items():
            plain = key[3:] if key.startswith("s3.") else key
            if plain not in OPTIONS:
                if key.startswith("s3."):
                    raise BadInput(f"unknown s3 option {key!r}",
                                   "known: " + ", ".join(sorted(OPTIONS)))
                continue  # another publisher's (or the CLI's MLflow options)
            if value is None or value == "":
                continue
            if key.startswith("s3.") or plain not in values:
                values[plain] = value
        settings: dict[str, Any] = {}
        for key in ("endpoint_url", "profile", "region"):
            if key in values:
                settings[key] = str(values[key])
        if "addressing_style" in values:
            style = str(values["addressing_style"])
            if style not in ("path", "virtual", "auto"):
                raise BadInput(f"s3 option addressing_style={style!r}",
                               "choose path, virtual or auto")
            settings["addressing_style"] = style
        for key in ("multipart_threshold", "multipart_chunksize"):
            if key in values:
                settings[key] = _size(key, values[key])
        for key in ("max_concurrency", "retries"):
            if key in values:
                settings[key] = _number(key, values[key])
        for key in ("connect_timeout", "read_timeout"):
            if key in values:
                settings[key] = _number(key, values[key], float)
        if "verify" in values:
            if values["verify"] not in ("auto", "checksum", "download"):
                raise BadInput(f"s3 option verify={values['verify']!r}",
                               "choose auto, checksum or download")
            settings["verify"] = values["verify"]
        if "checksum" in values:
            if values["checksum"] not in ("sha256", "off"):
                raise BadInput(f"s3 option checksum={values['checksum']!r}",
                               "choose sha256 or off")
            settings["checksum"] = values["checksum"]
        for key in ("create_bucket", "force"):
            if key in values:
                settings[key] = _flag(values[key])
        result = cls(**settings)
        if result.checksum == "off" and result.verify == "checksum":
            raise BadInput("s3 options checksum=off and verify=checksum contradict each "
                           "other", "use verify=download (or auto) with checksum=off")
        return result


# --------------------------------------------------------------------------- the client


def _redact(url: str | None) -> str:
    """A URL without any user:password part, for messages."""
    if not url:
        return "AWS S3"
    parsed = urlparse(url)
    if parsed.username or parsed.password:
        host = parsed.hostname or ""
        if parsed.port:
            host += f":{parsed.port}"
        parsed = parsed._replace(netloc=host)
    return urlunparse(parsed)


@dataclass
class Connection:
    client: Any
    endpoint: str  # for messages, without credentials
    credentials_from: str  # "env", "shared-credentials-file", ... never the keys
    settings: Settings


def _connect(settings: Settings) -> Connection:
    import boto3
    import botocore.exceptions
    from botocore.config import Config

    try:
        session = boto3.Session(profile_name=settings.profile)
    except botocore.exceptions.ProfileNotFound as error:
        raise BadInput(f"AWS profile {settings.profile!r} does not exist ({error})",
                       "check AWS_CONFIG_FILE / ~/.aws/config") from None
    credentials = session.get_credentials()
    if credentials is None:
        raise S3PublishError(
            "no S3 credentials found in the standard places (AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, AWS_PROFILE and ~/.aws/credentials, SSO, instance "
            "roles)", "set them in the environment or a profile; onnxport never takes "
            "them on its command line")
    config: dict[str, Any] = {
        "retries": {"mode": "standard", "total_max_attempts": settings.retries},
        "connect_timeout": settings.connect_timeout,
        "read_timeout": settings.read_timeout,
        "max_pool_connections": max(10, settings.max_concurrency),
    }
    if settings.addressing_style:
        config["s3"] = {"addressing_style": settings.addressing_style}
    if settings.checksum == "off":
        config["request_checksum_calculation"] = "when_required"
        config["response_checksum_validation"] = "when_required"
    try:
        botocore_config = Config(**config)
    except TypeError:  # botocore < 1.36 has no checksum settings and sends none unasked
        config.pop("request_checksum_calculation", None)
        config.pop("response_checksum_validation", None)
        botocore_config = Config(**config)
    try:
        client = session.client("s3", endpoint_url=settings.endpoint_url,
                                region_name=settings.region, config=botocore_config)
    except ValueError as error:  # a malformed endpoint URL
        raise BadInput(f"S3 endpoint {_redact(settings.endpoint_url)!r} is not valid: "
                       f"{error}") from None
    endpoint = _redact(client.meta.endpoint_url)
    return Connection(client, endpoint, getattr(credentials, "method", "") or "unknown",
                      settings)


def _original(error: BaseException) -> BaseException:
    """boto3's transfer manager wraps a ClientError in S3UploadFailedError."""
    import botocore.exceptions

    seen = error
    while not isinstance(seen, (botocore.exceptions.ClientError,
                                botocore.exceptions.BotoCoreError)):
        nxt = seen.__cause__ or seen.__context__
        if nxt is None:
            return error
        seen = nxt
    return seen


def _code(error: BaseException) -> str:
    response = getattr(error, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def explain(error: BaseException, conn: Connection, doing: str,
            bucket: str | None = None) -> S3PublishError:
    """One clear line for a boto error: what failed, where, and what to do; never a key."""
    import botocore.exceptions as bx

    where = f"S3 endpoint {conn.endpoint}"
    error = _original(error)
    if isinstance(error, bx.ClientError):
        code = _code(error)
        status = (error.response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        if code in ("NoSuchBucket", "404", "NotFound") and bucket:
            return S3PublishError(f"bucket {bucket!r} does not exist at {where}",
                                  "create it, or pass --create-bucket")
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken",
                    "ExpiredToken", "InvalidClientTokenId", "AuthorizationHeaderMalformed",
                    "403", "AccessDenied", "Forbidden") or status == 403:
            return S3PublishError(
                f"{where} refused the credentials (from {conn.credentials_from}) while "
                f"{doing}: {code or status} (wrong access key or secret, or no permission "
                f"on bucket {bucket!r})",
                "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the profile")
        message = error.response.get("Error", {}).get("Message") or str(error)
        return S3PublishError(f"{where} answered {code or status} while {doing}: {message}")
    if isinstance(error, (bx.EndpointConnectionError, bx.ConnectionClosedError,
                          bx.ConnectTimeoutError, bx.ReadTimeoutError,
                          bx.ProxyConnectionError, bx.HTTPClientError)):
        return S3PublishError(
            f"cannot reach {where} while {doing}, after {conn.settings.retries} attempts "
            f"({type(error).__name__})",
            "check that the server is running and the endpoint is right "
            "(--publish-option endpoint_url=, AWS_ENDPOINT_URL_S3)")
    if isinstance(error, bx.NoCredentialsError):
        return S3PublishError("no S3 credentials found in the standard places",
                              "set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or a profile")
    return S3PublishError(f"{where}: {type(error).__name__} while {doing}: {error}")


def _boto_errors() -> tuple[type[BaseException], ...]:
    import boto3.exceptions
    import botocore.exceptions

    return (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError,
            boto3.exceptions.Boto3Error)


# --------------------------------------------------------------------------- URIs and keys


def parse_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` -> ("bucket", "some/prefix")."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise BadInput(f"{uri!r} is not an s3://BUCKET[/PREFIX] URI")
    return parsed.netloc, parsed.path.strip("/")


def _join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


def _b64(digest_hex: str) -> str:
    return base64.b64encode(bytes.fromhex(digest_hex)).decode()


def _ascii(value: Any) -> str:
    """S3 user metadata must be printable ASCII."""
    text = str(value)
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in text)[:256]


# --------------------------------------------------------------------------- files


@dataclass
class ArtifactFile:
    path: str  # relative, POSIX
    local: Path
    size: int
    sha256: str
    target: str | None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(MiB), b""):
            digest.update(block)
    return digest.hexdigest()


def _dir(posix: str) -> str:
    return "" if posix == "." else posix


def artifact_files(artifact: Path, manifests: list[dict[str, Any]]) -> list[ArtifactFile]:
    """Every regular file of the artifact; model files keep their manifest sha256 (the
    core has just checked them). Manifests come after the files they describe."""
    known: dict[str, str] = {}
    targets: dict[str, str] = {}  # directory (relative, "" for the root) -> target
    for path in sorted(artifact.rglob("manifest.json")):
        manifest = json.loads(path.read_text())
        rel_dir = _dir(path.parent.relative_to(artifact).as_posix())
        targets[rel_dir] = (manifest.get("target") or {}).get("name") or rel_dir
        for entry in manifest.get("files", []):
            known[_join(rel_dir, entry["path"])] = entry["sha256"]
    files = []
    regular = (p for p in artifact.rglob("*") if p.is_file() and not p.is_symlink())
    for local in sorted(regular):
        rel = local.relative_to(artifact).as_posix()
        if rel == MARKER:
            raise BadInput(f"{artifact} holds a file named {MARKER}, which the s3 "
                           "publisher reserves for its completion marker")
        parents = [_dir(p.as_posix()) for p in PurePosixPath(rel).parents]
        target = next((targets[d] for d in parents if d in targets), None)
        files.append(ArtifactFile(rel, local, local.stat().st_size,
                                  known.get(rel) or _sha256(local), target))
    files.sort(key=lambda f: (PurePosixPath(f.path).name == "manifest.json", f.path))
    return files


# --------------------------------------------------------------------------- versions


def ensure_bucket(conn: Connection, bucket: str, create: bool) -> bool:
    """True if the bucket was created. SeaweedFS (and some others) create buckets on the
    first PUT, so the check is explicit: a missing bucket is an error unless asked."""
    client = conn.client
    try:
        client.head_bucket(Bucket=bucket)
        return False
    except _boto_errors() as error:
        original = _original(error)
        if _code(original) not in ("404", "NoSuchBucket", "NotFound"):
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
    except _boto_errors() as error:
        raise explain(error, conn, f"creating bucket {bucket!r}", bucket) from None
    log.info("created bucket %s at %s", bucket, conn.endpoint)
    return True


def _version_prefixes(conn: Connection, bucket: str, home: str) -> list[str]:
    """Version names under HOME/, newest first (complete or not)."""
    names = []
    paginator = conn.client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=home + "/", Delimiter="/"):
        for entry in page.get("CommonPrefixes", []) or []:
            name = entry["Prefix"][len(home) + 1:].strip("/")
            if VERSION.match(name):
                names.append(name)
    return sorted(names, key=_version_order, reverse=True)


def _version_order(name: str) -> tuple[str, int]:
    """v20250101_120000 < v20250101_120000_2 < v20250101_120001."""
    parts = name[1:].split("_")
    return ("_".join(parts[:2]), int(parts[2]) if len(parts) > 2 else 1)


def read_marker(conn: Connection, bucket: str, version_key: str) -> dict[str, Any] | None:
    """The completion marker of a version, or None if the version is not complete."""
    try:
        body = conn.client.get_object(Bucket=bucket, Key=_join(version_key, MARKER))["Body"]
        marker = json.loads(body.read())
    except _boto_errors() as error:
        if _code(_original(error)) in ("NoSuchKey", "404", "NotFound"):
            return None
        raise explain(error, conn, f"reading s3://{bucket}/{version_key}/{MARKER}",
                      bucket) from None
    except ValueError:
        return None  # not ours, or damaged: never counts as complete
    return marker if marker.get("format") == MARKER_FORMAT else None


def _find_published(conn: Connection, bucket: str, home: str,
                    artifact_sha256: str) -> str | None:
    for version in _version_prefixes(conn, bucket, home):
        marker = read_marker(conn, bucket, _join(home, version))
        if marker and marker.get("artifact_sha256") == artifact_sha256:
            return version
    return None


def _free_version(conn: Connection, bucket: str, home: str) -> str:
    from onnxport.artifact.publishing import version_tag

    base = version_tag()
    for n in range(1, 1000):
        name = base if n == 1 else f"{base}_{n}"
        try:
            found = conn.client.list_objects_v2(
                Bucket=bucket, Prefix=_join(home, name) + "/", MaxKeys=1)
        except _boto_errors() as error:
            raise explain(error, conn, f"listing s3://{bucket}/{home}/", bucket) from None
        if not found.get("KeyCount"):
            return name
    raise S3PublishError(f"s3://{bucket}/{home}/{base}_* are all taken")


# --------------------------------------------------------------------------- upload


def _transfer_config(settings: Settings):
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(multipart_threshold=settings.multipart_threshold,
                          multipart_chunksize=settings.multipart_chunksize,
                          max_concurrency=settings.max_concurrency,
                          use_threads=settings.max_concurrency > 1)


def _part_size(settings: Settings, size: int) -> int | None:
    """The part size boto3 uses for a file of `size` bytes, None for a single PUT."""
    if size < settings.multipart_threshold:
        return None
    from s3transfer.utils import ChunksizeAdjuster

    return ChunksizeAdjuster().adjust_chunksize(settings.multipart_chunksize, size)


def _local_checksums(path: Path, part_size: int | None) -> tuple[str, str]:
    """(sha256 hex of the file, the S3 SHA-256 checksum value for how it was uploaded)."""
    whole = hashlib.sha256()
    parts: list[bytes] = []
    with path.open("rb") as handle:
        while True:
            block = handle.read(part_size or MiB)
            if not block:
                break
            whole.update(block)
            if part_size:
                parts.append(hashlib.sha256(block).digest())
    if not part_size:
        return whole.hexdigest(), base64.b64encode(whole.digest()).decode()
    composite = base64.b64encode(hashlib.sha256(b"".join(parts)).digest()).decode()
    return whole.hexdigest(), f"{composite}-{len(parts)}"


def _download_sha256(conn: Connection, bucket: str, key: str) -> tuple[str, int]:
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
        part_size = _part_size(settings, item.size) if "-" in stored else None
        local_hex, expected = _local_checksums(item.local, part_size)
        if local_hex != item.sha256:
            raise VerificationFailed(f"{item.path} changed while it was being published",
                                     "publish again")
        if stored == expected:
            return "sha256 (server)" if part_size is None else "sha256 of parts (server)"
        if settings.verify == "checksum" or part_size is None:
            raise VerificationFailed(
                f"s3://{bucket}/{key} does not match {item.path}: the server's SHA-256 is "
                f"{stored}, the file's {expected}", "publish again")
        # A composite checksum over other part boundaries: let the bytes decide.
    elif settings.verify == "checksum":
        raise S3PublishError(f"S3 endpoint {conn.endpoint} returned no SHA-256 checksum "
                             f"for s3://{bucket}/{key}",
                             "use --publish-option verify=download with this store")
    digest, size = _download_sha256(conn, bucket, key)
    if digest != item.sha256 or size != item.size:
        raise VerificationFailed(f"s3://{bucket}/{key} read back does not match "
                                 f"{item.path} (sha256 {digest[:16]}... vs "
                                 f"{item.sha256[:16]}...)", "publish again")
    return "download"


def _metadata(item: ArtifactFile, request: PublishRequest, version: str,
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
    return {k: _ascii(v) for k, v in meta.items() if v}


def _content_type(path: str) -> str:
    if path.endswith(".onnx") or path.endswith(".data") or path.endswith(".tflite"):
        return "application/octet-stream"
    return mimetypes.guess_type(path)[0] or "application/octet-stream"


def _cleanup(conn: Connection, bucket: str, keys: list[str]) -> bool:
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
    from onnxport.artifact.publishing import artifact_digest

    import onnxport

    settings = Settings.from_options(request.options)
    bucket, prefix = parse_uri(request.uri)
    home = _join(prefix, request.name)
    conn = _connect(settings)
    created_bucket = ensure_bucket(conn, bucket, settings.create_bucket)
    digest = artifact_digest(request.manifests)
    artifact_sha256 = hashlib.sha256(digest.encode()).hexdigest()

    if not settings.force and not created_bucket:
        try:
            existing = _find_published(conn, bucket, home, artifact_sha256)
        except _boto_errors() as error:
            raise explain(error, conn, f"listing s3://{bucket}/{home}/", bucket) from None
        if existing:
            return PublishResult(
                uri=f"s3://{bucket}/{home}/{existing}", created=False,
                details={"reason": f"the same artifact (sha256 {artifact_sha256[:12]}...) "
                                   f"is already published as {existing}",
                         "endpoint": conn.endpoint})

    version = _free_version(conn, bucket, home)
    version_key = _join(home, version)
    files = artifact_files(request.artifact, request.manifests)
    transfer = _transfer_config(settings)
    uploaded: list[str] = []
    checks: dict[str, str] = {}
    multipart: list[str] = []
    current = ""
    try:
        for item in files:
            key = _join(version_key, item.path)
            current = f"uploading {item.path} to s3://{bucket}/{key}"
            log.info("uploading %s (%d bytes) to s3://%s/%s", item.path, item.size, bucket,
                     key)
            extra: dict[str, Any] = {
                "Metadata": _metadata(item, request, version, artifact_sha256),
                "ContentType": _content_type(item.path),
            }
            if settings.checksum == "sha256":
                extra["ChecksumAlgorithm"] = "SHA256"
            uploaded.append(key)  # a failed upload may still have left it
            conn.client.upload_file(str(item.local), bucket, key, ExtraArgs=extra,
                                    Config=transfer)
            if _part_size(settings, item.size):
                multipart.append(item.path)
        for item in files:
            key = _join(version_key, item.path)
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
        args: dict[str, Any] = {"Bucket": bucket, "Key": _join(version_key, MARKER),
                                "Body": body, "ContentType": "application/json",
                                "Metadata": {"artifact-sha256": artifact_sha256}}
        if settings.checksum == "sha256":
            args["ChecksumSHA256"] = _b64(hashlib.sha256(body).hexdigest())
        uploaded.append(args["Key"])  # an answer lost on the way may hide a stored marker
        conn.client.put_object(**args)
    except BaseException as error:
        removed = _cleanup(conn, bucket, uploaded)
        if not isinstance(error, Exception):
            raise
        state = ("the objects already uploaded were removed" if removed else
                 "objects already uploaded may remain")
        incomplete = (f"No completion marker was written, so this version is incomplete "
                      f"and onnxport pull refuses it ({state})")
        if isinstance(error, VerificationFailed):
            raise VerificationFailed(f"{error.message}. {incomplete}", error.hint) from None
        boto = isinstance(error, _boto_errors()) or isinstance(_original(error),
                                                              _boto_errors())
        reason = explain(error, conn, current, bucket) if boto else error
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


# --------------------------------------------------------------------------- pull


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
        versions = _version_prefixes(conn, bucket, key)
    except _boto_errors() as error:
        raise explain(error, conn, f"listing s3://{bucket}/{key}/", bucket) from None
    for version in versions:
        marker = read_marker(conn, bucket, _join(key, version))
        if marker is not None:
            return _join(key, version), marker
    incomplete = f" ({len(versions)} incomplete)" if versions else ""
    raise BadInput(f"s3://{bucket}/{key} has no complete published version{incomplete}",
                   "give s3://BUCKET/PREFIX/NAME or .../NAME/vYYYYMMDD_HHMMSS as "
                   "onnxport publish printed it")


def _safe(rel: str) -> bool:
    path = PurePosixPath(rel)
    return bool(rel) and not path.is_absolute() and ".." not in path.parts


def pull(uri: str, destination: Path) -> None:
    settings = Settings()
    bucket, key = parse_uri(uri)
    conn = _connect(settings)
    try:
        conn.client.head_bucket(Bucket=bucket)
    except _boto_errors() as error:
        raise explain(error, conn, f"checking bucket {bucket!r}", bucket) from None
    version_key, marker = resolve_version(conn, bucket, key)
    transfer = _transfer_config(settings)
    for entry in marker.get("files", []):
        rel = entry["path"]
        if not _safe(rel):
            raise VerificationFailed(f"the marker of s3://{bucket}/{version_key} names an "
                                     f"unsafe path {rel!r}", "refusing to pull it")
        local = destination / rel
        local.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn.client.download_file(bucket, _join(version_key, rel), str(local),
                                      Config=transfer)
        except _boto_errors() as error:
            raise explain(error, conn, f"downloading s3://{bucket}/{version_key}/{rel}",
                          bucket) from None
        if local.stat().st_size != entry["bytes"] or _sha256(local) != entry["sha256"]:
            raise VerificationFailed(f"s3://{bucket}/{version_key}/{rel} does not match "
                                     "the sha256 its completion marker recorded",
                                     "publish the artifact again")


@hookimpl
def onnxport_register_publishers(register):
    register(Publisher(
        name="s3",
        description="S3-compatible object storage (AWS S3, MinIO, SeaweedFS, ...): "
                    "s3://BUCKET/PREFIX/NAME/vYYYYMMDD_HHMMSS/",
        schemes=("s3",),
        publish=publish,
        pull=pull,
        requires=Requirements(modules=("boto3",), extra="s3"),
    ))


__all__: Iterable[str] = ["publish", "pull", "parse_uri", "Settings", "MARKER"]
