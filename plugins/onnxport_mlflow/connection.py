"""Reaching the tracking server: MLflow's client, bounded retries, a quick check that
the server answers at all, and one clear line for any MLflow error that names the
server without credentials. mlflow is imported inside the functions."""

from __future__ import annotations

import contextlib
import os
import ssl
import time
import urllib.error
import urllib.request
from typing import Iterator
from urllib.parse import urlparse, urlunparse

from onnxport.errors import BadInput

from .settings import Settings


class MlflowPublishError(BadInput):
    """The tracking server refused or could not be reached."""


def redact(uri: str | None) -> str:
    """A tracking URI without a user:password part, for messages."""
    if not uri:
        return "(none)"
    parsed = urlparse(uri)
    if parsed.password or parsed.username:
        host = parsed.hostname or ""
        if parsed.port:
            host += f":{parsed.port}"
        parsed = parsed._replace(netloc=host)
    return urlunparse(parsed)


@contextlib.contextmanager
def client_environment(settings: Settings) -> Iterator[None]:
    """Bounded HTTP retries and no 'View run at' lines on stdout, unless the user set
    those MLflow variables; restored afterwards."""
    defaults = {
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(settings.retries),
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(settings.timeout),
        "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    }
    added = [k for k in defaults if k not in os.environ]
    for key in added:
        os.environ[key] = defaults[key]
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def tracking_uri(settings: Settings) -> str:
    if settings.tracking_uri:
        return settings.tracking_uri
    import mlflow

    return mlflow.get_tracking_uri()


def reachable(uri: str, settings: Settings) -> None:
    """A quick, bounded check that an HTTP tracking server answers at all, so that an
    unreachable one is one clear line after a few seconds and not minutes of retries.
    Any HTTP answer counts (a server behind authentication answers 401)."""
    parsed = urlparse(uri)
    if parsed.scheme not in ("http", "https"):
        return
    url = urlunparse(parsed._replace(netloc=parsed.hostname + (
        f":{parsed.port}" if parsed.port else ""))).rstrip("/") + "/health"
    problem: BaseException | None = None
    for attempt in range(settings.retries):
        if attempt:
            time.sleep(min(2 ** (attempt - 1), 5))
        try:
            with urllib.request.urlopen(url, timeout=min(settings.timeout, 10)):
                return
        except urllib.error.HTTPError:
            return
        except (urllib.error.URLError, OSError) as error:
            problem = getattr(error, "reason", error)
            if isinstance(problem, ssl.SSLError) or isinstance(error, ssl.SSLError):
                return  # it answered; MLflow's client applies its own TLS settings
    raise MlflowPublishError(
        f"cannot reach the MLflow tracking server at {redact(uri)} after "
        f"{settings.retries} attempts ({problem})",
        "check that it is running and MLFLOW_TRACKING_URI (or --publish-option "
        "tracking_uri=) points at it")


def client(settings: Settings):
    """(an MlflowClient, the tracking URI), after checking the server answers."""
    from mlflow import MlflowClient

    uri = tracking_uri(settings)
    reachable(uri, settings)
    registry = settings.registry_uri or os.environ.get("MLFLOW_REGISTRY_URI") or None
    if registry and registry != uri:
        reachable(registry, settings)
    return MlflowClient(tracking_uri=uri, registry_uri=registry), uri


def explain(error: BaseException, uri: str, doing: str) -> MlflowPublishError:
    """One clear line for an MLflow error, naming the server without credentials."""
    code = getattr(error, "error_code", "") or ""
    text = str(getattr(error, "message", "") or error).strip().splitlines()[0][:300]
    for secret in (os.environ.get("MLFLOW_TRACKING_PASSWORD"),
                   os.environ.get("MLFLOW_TRACKING_TOKEN")):
        if secret:
            text = text.replace(secret, "***")
    hint = None
    if code in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
        hint = ("check MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD or "
                "MLFLOW_TRACKING_TOKEN")
    elif "Max retries" in text or "Connection" in type(error).__name__ or "connect" in \
            text.lower():
        hint = "check that the tracking server is running"
    return MlflowPublishError(f"MLflow at {redact(uri)} failed while {doing}: "
                              f"{code + ': ' if code else ''}{text}", hint)
