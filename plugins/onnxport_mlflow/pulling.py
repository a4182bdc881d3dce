"""`pull`: download the artifacts of the model version a URI names into the core's
empty staging directory, and check that its manifests are those the version was
registered with (its `artifact_sha256` tag). The core then refuses links and checks
every file against its manifest."""

from __future__ import annotations

import shutil
from pathlib import Path

from onnxport.errors import VerificationFailed

from .connection import client_environment, explain
from .connection import client as connect
from .model import remove_model_files
from .registry import resolve
from .settings import Settings
from .tags import artifact_sha256
from .uris import parse_uri


def pull(uri: str, destination: Path) -> None:
    from mlflow.exceptions import MlflowException

    from onnxport.artifact.reading import open_artifact

    settings = Settings()
    name, version, alias = parse_uri(uri)
    with client_environment(settings):
        client, tracking = connect(settings)
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
    remove_model_files(destination)  # the MLflow model's own files: no manifest lists them
    recorded = (found.tags or {}).get("artifact_sha256")
    if recorded:
        manifests = [t.manifest for t in open_artifact(destination).targets]
        try:
            digest = artifact_sha256(manifests)
        except (KeyError, TypeError, AttributeError):
            digest = None  # a damaged manifest: not the one registered either
        if digest != recorded:
            raise VerificationFailed(
                f"{uri} (version {found.version}) does not hold the artifact it was "
                "registered with: its manifests' sha256 differs from the version's "
                "artifact_sha256 tag", "publish the artifact again")
