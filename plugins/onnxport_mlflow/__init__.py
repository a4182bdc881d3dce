"""Built-in plugin: register artifacts in the MLflow model registry, and pull them back.

`mlflow://NAME` publishes the artifact (models, manifests, reports) as run artifacts and
registers them as a new version of the registered model NAME, tagged with what onnxport
knows (framework, format, target, sha256, verification figures). With `--run-id` the
artifacts go into that (training) run and the version links to it; otherwise into a new
run of the experiment `onnxport`. `--alias staging` is the current MLflow way to say
what older registries called the stage "Staging". The same artifact (same sha256) is
not registered twice unless `--force`.

Pull: `mlflow://NAME/VERSION`, `mlflow://NAME@ALIAS`, or `mlflow://NAME` (the newest
version). The tracking server comes from MLflow's own settings (MLFLOW_TRACKING_URI,
MLFLOW_REGISTRY_URI, credentials in MLFLOW_TRACKING_USERNAME/PASSWORD/TOKEN), or
`--publish-option tracking_uri=...` when publishing.

mlflow is imported inside the functions: `onnxport --help` must not pay for it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping
from urllib.parse import unquote, urlparse, urlunparse

from onnxport.errors import BadInput, VerificationFailed
from onnxport.host import hookimpl
from onnxport.records import Publisher, PublishRequest, PublishResult, Requirements

log = logging.getLogger("onnxport.mlflow")

DEFAULT_EXPERIMENT = "onnxport"
ARTIFACT_ROOT = "onnxport"  # inside the run: onnxport/NAME/vYYYYMMDD_HHMMSS/

OPTIONS = {
    "tracking_uri": "the tracking server (default: MLFLOW_TRACKING_URI)",
    "registry_uri": "the model registry, if not the tracking server (MLFLOW_REGISTRY_URI)",
    "experiment": "where the publishing run goes without --run-id (default: "
                  "MLFLOW_EXPERIMENT_NAME, else 'onnxport')",
    "run_id": "the training run to log the artifact into and link the version to",
    "alias": "an alias to point at the version, e.g. staging",
    "description": "the model version's description",
    "retries": "attempts to reach the server before giving up (default 3)",
    "timeout": "seconds per HTTP request (default 30)",
    "force": "register again although the same artifact is there (--force)",
}


class MlflowPublishError(BadInput):
    """The tracking server refused or could not be reached."""


@dataclass(frozen=True)
class Settings:
    tracking_uri: str | None = None
    registry_uri: str | None = None
    experiment: str | None = None
    run_id: str | None = None
    alias: str | None = None
    description: str | None = None
    retries: int = 3
    timeout: int = 30
    force: bool = False

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> "Settings":
        values: dict[str, Any] = {}
        for key, value in options.items():
            plain = key[7:] if key.startswith("mlflow.") else key
            if plain not in OPTIONS:
                if key.startswith("mlflow."):
                    raise BadInput(f"unknown mlflow option {key!r}",
                                   "known: " + ", ".join(sorted(OPTIONS)))
                continue  # another publisher's
            if value is None or value == "":
                continue
            if key.startswith("mlflow.") or plain not in values:
                values[plain] = value
        settings: dict[str, Any] = {k: str(values[k]) for k in (
            "tracking_uri", "registry_uri", "experiment", "run_id", "alias", "description")
            if k in values}
        for key in ("retries", "timeout"):
            if key in values:
                try:
                    settings[key] = int(values[key])
                except (TypeError, ValueError):
                    raise BadInput(f"mlflow option {key}={values[key]!r} is not a "
                                   "number") from None
                if settings[key] <= 0:
                    raise BadInput(f"mlflow option {key}={values[key]!r} must be positive")
        if "force" in values:
            value = values["force"]
            settings["force"] = (value.strip().lower() in ("1", "true", "yes", "on")
                                 if isinstance(value, str) else bool(value))
        alias = settings.get("alias")
        if alias is not None and (not alias.replace("_", "").replace("-", "").isalnum()
                                  or alias.lower().startswith("v") and alias[1:].isdigit()
                                  or alias.lower() == "latest"):
            raise BadInput(f"--alias {alias!r} is not a valid MLflow alias",
                           "use letters, digits, '-' and '_', e.g. staging; not 'latest' "
                           "or v<number>")
        return cls(**settings)


# --------------------------------------------------------------------------- connection


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
def _client_environment(settings: Settings) -> Iterator[None]:
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


def _tracking_uri(settings: Settings) -> str:
    if settings.tracking_uri:
        return settings.tracking_uri
    import mlflow

    return mlflow.get_tracking_uri()


def _reachable(uri: str, settings: Settings) -> None:
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


def _client(settings: Settings):
    from mlflow import MlflowClient

    uri = _tracking_uri(settings)
    _reachable(uri, settings)
    registry = settings.registry_uri or os.environ.get("MLFLOW_REGISTRY_URI") or None
    if registry and registry != uri:
        _reachable(registry, settings)
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


# --------------------------------------------------------------------------- tags


def artifact_sha256(manifests: list[dict[str, Any]]) -> str:
    from onnxport.artifact.publishing import artifact_digest

    return hashlib.sha256(artifact_digest(manifests).encode()).hexdigest()


def _model_sha256(manifest: dict[str, Any]) -> str:
    model = manifest.get("model")
    for entry in manifest.get("files", []):
        if entry["path"] == model:
            return entry["sha256"]
    return manifest["files"][0]["sha256"] if manifest.get("files") else ""


def model_format(manifest: dict[str, Any]) -> str:
    """onnx, tflite, ...: `model_format` (older manifests: a second `format` key)."""
    fmt = manifest.get("model_format") or manifest.get("format") or "onnx"
    return "onnx" if str(fmt).startswith("onnxport-") else str(fmt)


def version_tags(manifests: list[dict[str, Any]], name: str) -> dict[str, str]:
    import onnxport

    first = manifests[0]
    source = first.get("source") or {}
    tags = {
        "format": model_format(first),
        "framework": str(source.get("framework") or ""),
        "framework_version": str(source.get("framework_version") or ""),
        "source": str(source.get("origin") or ""),
        "target": ",".join(m["target"]["name"] for m in manifests),
        "artifact_sha256": artifact_sha256(manifests),
        "onnxport_version": onnxport.__version__,
        "onnxport_name": name,
    }
    onnx = first.get("onnx") or {}
    if onnx.get("opset"):
        tags["opset"] = str(onnx["opset"])
    for manifest in manifests:
        suffix = "" if len(manifests) == 1 else f".{manifest['target']['name']}"
        verification = manifest.get("verification") or {}
        tags[f"sha256{suffix}"] = _model_sha256(manifest)
        tags[f"verification{suffix}"] = "passed" if verification.get("passed") else "failed"
        if verification.get("max_abs") is not None:
            tags[f"max_abs{suffix}"] = f"{float(verification['max_abs']):.6g}"
        providers = verification.get("providers")
        if providers:
            tags[f"providers{suffix}"] = ",".join(map(str, providers))
    return {k: v[:4900] for k, v in tags.items() if v}


def _description(manifests: list[dict[str, Any]], name: str) -> str:
    first = manifests[0]
    source = first.get("source") or {}
    parts = []
    for manifest in manifests:
        verification = manifest.get("verification") or {}
        worst = verification.get("max_abs")
        parts.append(f"{manifest['target']['name']} (max |error| {float(worst):.3g})"
                     if worst is not None else manifest["target"]["name"])
    return (f"{name}: {model_format(first)} for {', '.join(parts)}, converted from "
            f"{source.get('framework', '?')} {source.get('framework_version', '')} and "
            "verified by onnxport")


# --------------------------------------------------------------------------- publish


def _versions(client, name: str) -> list[Any]:
    found, token = [], None
    while True:
        page = client.search_model_versions(f"name='{_quote(name)}'", max_results=200,
                                            page_token=token)
        found.extend(page)
        token = getattr(page, "token", None)
        if not token:
            return found


def _quote(name: str) -> str:
    return name.replace("\\", "\\\\").replace("'", "\\'")


def _experiment_id(client, settings: Settings) -> str:
    if not settings.experiment and os.environ.get("MLFLOW_EXPERIMENT_ID"):
        return os.environ["MLFLOW_EXPERIMENT_ID"]
    name = settings.experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or \
        DEFAULT_EXPERIMENT
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return client.create_experiment(name)


def _ensure_registered_model(client, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException as error:
        if getattr(error, "error_code", "") != "RESOURCE_DOES_NOT_EXIST":
            raise
        try:
            client.create_registered_model(
                name, description="ONNX models published by onnxport")
        except MlflowException as again:
            if getattr(again, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
                raise


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


def publish(request: PublishRequest) -> PublishResult:
    from mlflow.exceptions import MlflowException

    from onnxport.artifact.publishing import version_tag

    settings = Settings.from_options(request.options)
    name, version, alias = parse_uri(request.uri)
    if version or alias:
        raise BadInput(f"publish to mlflow://{name}, not {request.uri}",
                       "MLflow numbers versions itself; set an alias with --alias")
    with _client_environment(settings):
        client, uri = _client(settings)
        doing = f"looking up registered model {name!r}"
        try:
            tags = version_tags(request.manifests, request.name)
            if not settings.force:
                versions = sorted(_versions(client, name), key=lambda v: -int(v.version))
                for existing in versions:
                    if (existing.tags or {}).get("artifact_sha256") == \
                            tags["artifact_sha256"]:
                        moved = _set_alias(client, name, existing.version, settings.alias)
                        return PublishResult(
                            uri=f"mlflow://{name}/{existing.version}", created=False,
                            details={"reason": "the same artifact (sha256 "
                                     f"{tags['artifact_sha256'][:12]}...) is already "
                                     f"version {existing.version}",
                                     "alias": moved, "tracking_uri": redact(uri)})
            own_run = not settings.run_id
            if own_run:
                doing = "creating the publishing run"
                experiment_id = _experiment_id(client, settings)
                run = client.create_run(experiment_id, run_name=f"publish {request.name}",
                                        tags={"onnxport.artifact": request.name,
                                              "mlflow.source.name": "onnxport publish"})
            else:
                doing = f"looking up run {settings.run_id}"
                try:
                    run = client.get_run(settings.run_id)
                except MlflowException as error:
                    if getattr(error, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST",
                                                            "INVALID_PARAMETER_VALUE"):
                        raise MlflowPublishError(
                            f"run {settings.run_id!r} does not exist at {redact(uri)}",
                            "give the run id of the training run (--run-id)") from None
                    raise
            run_id = run.info.run_id
            path = f"{ARTIFACT_ROOT}/{request.name}/{version_tag()}"
            try:
                doing = f"uploading the artifact to run {run_id}"
                client.log_artifacts(run_id, str(request.artifact), artifact_path=path)
                doing = f"registering a version of {name!r}"
                _ensure_registered_model(client, name)
                with _quiet("mlflow.store.model_registry.abstract_store"):  # "Waiting..."
                    registered = client.create_model_version(
                        name, source=f"{run.info.artifact_uri.rstrip('/')}/{path}",
                        run_id=run_id, tags=tags,
                        description=settings.description or _description(
                            request.manifests, request.name))
                doing = f"setting alias {settings.alias!r}"
                moved = _set_alias(client, name, registered.version, settings.alias)
            except BaseException:
                if own_run:
                    with contextlib.suppress(Exception):
                        client.set_terminated(run_id, "FAILED")
                raise
            if own_run:
                with contextlib.suppress(Exception):
                    client.set_terminated(run_id, "FINISHED")
        except MlflowPublishError:
            raise
        except MlflowException as error:
            raise explain(error, uri, doing) from None
        except OSError as error:  # requests' connection errors are OSErrors
            raise explain(error, uri, doing) from None
    log.info("registered %s as %s version %s", request.name, name, registered.version)
    return PublishResult(
        uri=f"mlflow://{name}/{registered.version}",
        details={"tracking_uri": redact(uri), "run_id": run_id, "alias": moved,
                 "artifact_path": path, "tags": tags})


@contextlib.contextmanager
def _quiet(logger: str) -> Iterator[None]:
    chatty = logging.getLogger(logger)
    level = chatty.level
    chatty.setLevel(logging.WARNING)
    try:
        yield
    finally:
        chatty.setLevel(level)


def _set_alias(client, name: str, version: str, alias: str | None) -> str | None:
    if not alias:
        return None
    client.set_registered_model_alias(name, alias, str(version))
    return alias


# --------------------------------------------------------------------------- pull


def resolve(client, name: str, version: str | None, alias: str | None, uri: str):
    """The model version a pull URI names (the newest READY one for a bare name)."""
    from mlflow.exceptions import MlflowException

    def missing(error: MlflowException) -> bool:
        return getattr(error, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST",
                                                    "INVALID_PARAMETER_VALUE")

    def no_model() -> BadInput:
        return BadInput(f"there is no registered model {name!r} at {redact(uri)}",
                        "check the name (and MLFLOW_TRACKING_URI)")

    try:
        if alias:
            return client.get_model_version_by_alias(name, alias)
        if version and version != "latest":
            return client.get_model_version(name, version)
        versions = [v for v in _versions(client, name)
                    if getattr(v, "status", "READY") == "READY"]
    except MlflowException as error:
        if not missing(error):
            raise
        try:
            client.get_registered_model(name)
        except MlflowException as again:
            if missing(again):
                raise no_model() from None
            raise
        what = f"alias {alias!r}" if alias else f"version {version}"
        raise BadInput(f"registered model {name!r} has no {what}",
                       "see its versions and aliases in the MLflow UI") from None
    if not versions:
        try:
            client.get_registered_model(name)
        except MlflowException as error:
            if missing(error):
                raise no_model() from None
            raise
        raise BadInput(f"registered model {name!r} has no versions")
    return max(versions, key=lambda v: int(v.version))


def pull(uri: str, destination: Path) -> None:
    from mlflow.exceptions import MlflowException

    settings = Settings()
    name, version, alias = parse_uri(uri)
    with _client_environment(settings):
        client, tracking = _client(settings)
        try:
            found = resolve(client, name, version, alias, tracking)
            download = destination / ".mlflow-download"
            import mlflow.artifacts

            local = Path(mlflow.artifacts.download_artifacts(
                artifact_uri=found.source, dst_path=str(download), tracking_uri=tracking))
        except MlflowException as error:
            raise explain(error, tracking, f"downloading {uri}") from None
        except OSError as error:
            raise explain(error, tracking, f"downloading {uri}") from None
    for item in list(local.iterdir()):
        shutil.move(str(item), str(destination / item.name))
    shutil.rmtree(download, ignore_errors=True)
    recorded = (found.tags or {}).get("artifact_sha256")
    if recorded:
        import json

        from onnxport.flow.reverify import find_manifests

        manifests = [json.loads(p.read_text()) for p in find_manifests(destination)]
        if artifact_sha256(manifests) != recorded:
            raise VerificationFailed(
                f"{uri} (version {found.version}) does not hold the artifact it was "
                "registered with: its manifests' sha256 differs from the version's "
                "artifact_sha256 tag", "publish the artifact again")


@hookimpl
def onnxport_register_publishers(register):
    register(Publisher(
        name="mlflow",
        description="the MLflow model registry: mlflow://REGISTERED_MODEL "
                    "(pull: mlflow://NAME/VERSION or mlflow://NAME@ALIAS)",
        schemes=("mlflow",),
        publish=publish,
        pull=pull,
        requires=Requirements(modules=("mlflow",), extra="mlflow"),
    ))
