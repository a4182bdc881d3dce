"""The model registry and the tracking store through MlflowClient: versions of a
registered model, the experiment of a publishing run, aliases, and the version a pull
URI names. mlflow is imported inside the functions."""

from __future__ import annotations

import os
from typing import Any

from onnxport.errors import BadInput

from .connection import redact
from .settings import Settings

DEFAULT_EXPERIMENT = "onnxport"


def quote(name: str) -> str:
    """A name inside a single-quoted MLflow search filter."""
    return name.replace("\\", "\\\\").replace("'", "\\'")


def versions(client, name: str) -> list[Any]:
    """Every version of the registered model `name` (all pages)."""
    found, token = [], None
    while True:
        page = client.search_model_versions(f"name='{quote(name)}'", max_results=200,
                                            page_token=token)
        found.extend(page)
        token = getattr(page, "token", None)
        if not token:
            return found


def experiment_id(client, settings: Settings) -> str:
    if not settings.experiment and os.environ.get("MLFLOW_EXPERIMENT_ID"):
        return os.environ["MLFLOW_EXPERIMENT_ID"]
    name = settings.experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or \
        DEFAULT_EXPERIMENT
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return client.create_experiment(name)


def ensure_registered_model(client, name: str) -> None:
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


def set_alias(client, name: str, version: str, alias: str | None) -> str | None:
    if not alias:
        return None
    client.set_registered_model_alias(name, alias, str(version))
    return alias


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
        ready = [v for v in versions(client, name)
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
    if not ready:
        try:
            client.get_registered_model(name)
        except MlflowException as error:
            if missing(error):
                raise no_model() from None
            raise
        raise BadInput(f"registered model {name!r} has no versions")
    return max(ready, key=lambda v: int(v.version))
