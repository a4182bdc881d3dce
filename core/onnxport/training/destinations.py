"""Where a training export goes besides its directory: the active MLflow run and the
publishers' URIs. A problem here is a note in the status, never an exception in training."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, Mapping

LOG = logging.getLogger("onnxport.training")


def active_mlflow_run() -> tuple[str, str] | None:
    """(tracking URI, run id) of the MLflow run active in this thread, if any. mlflow is
    looked at only if the training script imported it: no import, no active run."""
    mlflow = sys.modules.get("mlflow")
    if mlflow is None:
        return None
    try:
        run = mlflow.active_run()
        return (mlflow.get_tracking_uri(), run.info.run_id) if run is not None else None
    except Exception:
        return None


def log_to_mlflow(run: tuple[str, str], artifact: Path, status_path: Path,
                   document: Mapping[str, Any]) -> str | None:
    """Log the artifact (when there is one) and the status to the run; a problem is
    returned as a note, never raised."""
    try:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=run[0])
        if document["state"] == "passed" and Path(artifact).is_dir():
            client.log_artifacts(run[1], str(artifact), artifact_path="onnx")
        if Path(status_path).is_file():
            client.log_artifact(run[1], str(status_path))
    except Exception as exc:
        LOG.warning("onnxport: logging the ONNX export to MLflow run %s failed: %s: %s",
                    run[1], type(exc).__name__, exc)
        return f"logging to MLflow run {run[1]} failed: {type(exc).__name__}: {exc}"
    return None


def publish_artifact(artifact: Path, uri: str, options: Mapping[str, Any]) -> str:
    from onnxport.artifact.publishing import publish
    from onnxport.host import default_host

    return publish(artifact, uri, default_host(), dict(options)).uri
