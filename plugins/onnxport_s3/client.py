"""The boto3 side: a client configured from the settings, the transfer settings, and one
clear line for any boto error. boto3 is imported inside the functions.

Credentials come only from boto3's standard chain and are never written or logged; a
message names where they came from (`env`, `shared-credentials-file`, ...), never what
they are, and shows an endpoint without any user:password part.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse, urlunparse

from onnxport.errors import BadInput

from .settings import Settings


class S3PublishError(BadInput):
    """The store refused, could not be reached, or did not keep what was sent."""


@dataclass
class Connection:
    client: Any
    endpoint: str  # for messages, without credentials
    credentials_from: str  # "env", "shared-credentials-file", ... never the keys
    settings: Settings


def redact(url: str | None) -> str:
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


def connect(settings: Settings) -> Connection:
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
        raise BadInput(f"S3 endpoint {redact(settings.endpoint_url)!r} is not valid: "
                       f"{error}") from None
    endpoint = redact(client.meta.endpoint_url)
    return Connection(client, endpoint, getattr(credentials, "method", "") or "unknown",
                      settings)


def transfer_config(settings: Settings):
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(multipart_threshold=settings.multipart_threshold,
                          multipart_chunksize=settings.multipart_chunksize,
                          max_concurrency=settings.max_concurrency,
                          use_threads=settings.max_concurrency > 1)


def part_size(settings: Settings, size: int) -> int | None:
    """The part size boto3 uses for a file of `size` bytes, None for a single PUT."""
    if size < settings.multipart_threshold:
        return None
    from s3transfer.utils import ChunksizeAdjuster

    return ChunksizeAdjuster().adjust_chunksize(settings.multipart_chunksize, size)


# --------------------------------------------------------------------------- errors


def boto_errors() -> tuple[type[BaseException], ...]:
    import boto3.exceptions
    import botocore.exceptions

    return (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError,
            boto3.exceptions.Boto3Error)


def original(error: BaseException) -> BaseException:
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


def is_boto_error(error: BaseException) -> bool:
    return isinstance(error, boto_errors()) or isinstance(original(error), boto_errors())


def code(error: BaseException) -> str:
    response = getattr(error, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def explain(error: BaseException, conn: Connection, doing: str,
            bucket: str | None = None) -> S3PublishError:
    """One clear line for a boto error: what failed, where, and what to do; never a key."""
    import botocore.exceptions as bx

    where = f"S3 endpoint {conn.endpoint}"
    error = original(error)
    if isinstance(error, bx.ClientError):
        kind = code(error)
        status = (error.response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        if kind in ("NoSuchBucket", "404", "NotFound") and bucket:
            return S3PublishError(f"bucket {bucket!r} does not exist at {where}",
                                  "create it, or pass --create-bucket")
        if kind in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken",
                    "ExpiredToken", "InvalidClientTokenId", "AuthorizationHeaderMalformed",
                    "403", "AccessDenied", "Forbidden") or status == 403:
            return S3PublishError(
                f"{where} refused the credentials (from {conn.credentials_from}) while "
                f"{doing}: {kind or status} (wrong access key or secret, or no permission "
                f"on bucket {bucket!r})",
                "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the profile")
        message = error.response.get("Error", {}).get("Message") or str(error)
        return S3PublishError(f"{where} answered {kind or status} while {doing}: {message}")
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

