"""`publish`: log the artifact's files as run artifacts under
onnxport/NAME/vYYYYMMDD_HHMMSS/ (of the training run with --run-id, else of a new run),
with the MLflow model files that make that directory a real MLflow model (`model`: the
onnx and python_function flavors, the first target's model), then register it as a new
version of the registered model, tagged, with the alias moved to it. The same artifact
(same sha256) is not registered twice unless forced."""

from __future__ import annotations

import contextlib
import logging
import tempfile
from pathlib import Path, PurePosixPath
from typing import Iterator

from onnxport.errors import BadInput
from onnxport.records import PublishRequest, PublishResult

from .connection import MlflowPublishError, client_environment, explain, redact
from .connection import client as connect
from .model import loadable, write_model_files
from .registry import ensure_registered_model, experiment_id, set_alias, versions
from .settings import settings_from
from .tags import description, version_tags
from .uris import parse_uri

log = logging.getLogger("onnxport.mlflow")

ARTIFACT_ROOT = "onnxport"  # inside the run: onnxport/NAME/vYYYYMMDD_HHMMSS/


def listed_files(request: PublishRequest) -> tuple[str, ...]:
    """The artifact's files as relative POSIX paths: those the core checked and listed;
    a request made by hand gets the list the core would make."""
    from onnxport.artifact.reading import open_artifact

    if request.files:
        return tuple(request.files)
    from onnxport.artifact.publishing import artifact_files as core_list

    return core_list(open_artifact(Path(request.artifact)))


def artifact_files(request: PublishRequest) -> list[tuple[Path, str]]:
    """(local file, its directory in the run's artifact path) for every file to log:
    the files the core checked and listed, each confined to the artifact (no path
    outside it, no symbolic link followed)."""
    from onnxport.artifact.reading import confined

    root = Path(request.artifact)
    files = []
    for relative in listed_files(request):
        rel = PurePosixPath(relative)
        local = confined(root, rel.as_posix(), str(root))
        if not local.is_file():
            raise BadInput(f"{local} is not a regular file", "convert again")
        parent = rel.parent.as_posix()
        files.append((local, "" if parent == "." else parent))
    return files


def target_order(request: PublishRequest) -> list[str]:
    """The targets in the order the conversion was asked for them (report.json keeps
    it; the manifests come in directory order)."""
    from onnxport.artifact.reading import open_artifact

    try:
        report = open_artifact(Path(request.artifact)).report or {}
    except Exception:  # no report: the manifests' order
        return []
    targets = report.get("targets")
    return list(targets) if isinstance(targets, dict) else []


@contextlib.contextmanager
def quiet(logger: str) -> Iterator[None]:
    chatty = logging.getLogger(logger)
    level = chatty.level
    chatty.setLevel(logging.WARNING)
    try:
        yield
    finally:
        chatty.setLevel(level)


def publish(request: PublishRequest) -> PublishResult:
    from mlflow.exceptions import MlflowException

    from onnxport.artifact.names import checked_name
    from onnxport.artifact.publishing import version_tag

    settings = settings_from(request.options, f"publishing to {request.uri}")
    name, version, alias = parse_uri(request.uri)
    if version or alias:
        raise BadInput(f"publish to mlflow://{name}, not {request.uri}",
                       "MLflow numbers versions itself; set an alias with --alias")
    artifact_name = checked_name(request.name, "the artifact's name")
    files = artifact_files(request)  # read and confined before anything is sent
    with client_environment(settings):
        client, uri = connect(settings)
        doing = f"looking up registered model {name!r}"
        try:
            tags = version_tags(request.manifests, artifact_name)
            if not settings.force:
                found = sorted(versions(client, name), key=lambda v: -int(v.version))
                for existing in found:
                    if (existing.tags or {}).get("artifact_sha256") == \
                            tags["artifact_sha256"]:
                        moved = set_alias(client, name, existing.version, settings.alias)
                        return PublishResult(
                            uri=f"mlflow://{name}/{existing.version}", created=False,
                            details={"reason": "the same artifact (sha256 "
                                     f"{tags['artifact_sha256'][:12]}...) is already "
                                     f"version {existing.version}",
                                     "alias": moved, "tracking_uri": redact(uri)})
            own_run = not settings.run_id
            if own_run:
                doing = "creating the publishing run"
                run = client.create_run(experiment_id(client, settings),
                                        run_name=f"publish {artifact_name}",
                                        tags={"onnxport.artifact": artifact_name,
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
            path = f"{ARTIFACT_ROOT}/{artifact_name}/{version_tag()}"
            try:
                doing = f"uploading the artifact to run {run_id}"
                with tempfile.TemporaryDirectory(prefix="onnxport-mlflow-") as scratch:
                    model_files = write_model_files(
                        Path(scratch), request.manifests, list(listed_files(request)),
                        run_id, path, artifact_name, order=target_order(request)
                    ) if loadable(request.manifests) else []
                    for local, directory in [*files, *model_files]:
                        client.log_artifact(run_id, str(local), artifact_path=str(
                            PurePosixPath(path, directory)))
                doing = f"registering a version of {name!r}"
                ensure_registered_model(client, name)
                with quiet("mlflow.store.model_registry.abstract_store"):  # "Waiting..."
                    registered = client.create_model_version(
                        name, source=f"{run.info.artifact_uri.rstrip('/')}/{path}",
                        run_id=run_id, tags=tags,
                        description=settings.description or description(
                            request.manifests, artifact_name))
                doing = f"setting alias {settings.alias!r}"
                moved = set_alias(client, name, registered.version, settings.alias)
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
    log.info("registered %s as %s version %s", artifact_name, name, registered.version)
    details = {"tracking_uri": redact(uri), "run_id": run_id, "alias": moved,
               "artifact_path": path, "tags": tags}
    if model_files:
        details["model_uri"] = f"models:/{name}/{registered.version}"
    return PublishResult(uri=f"mlflow://{name}/{registered.version}", details=details)
