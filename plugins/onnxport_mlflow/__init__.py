"""Built-in plugin: register artifacts in the MLflow model registry, and pull them back.

`mlflow://NAME` publishes the artifact (models, manifests, reports) as run artifacts and
registers them as a new version of the registered model NAME, tagged with what onnxport
knows (framework, format, target, sha256, verification figures). The version is a real
MLflow model (MLmodel with the onnx and python_function flavors, for the first target's
model; every target directory has its own MLmodel): `mlflow.onnx.load_model` and
`mlflow.pyfunc.load_model("models:/NAME/1")` load it. With `--run-id` the
artifacts go into that (training) run and the version links to it; otherwise into a new
run of the experiment `onnxport`. `--alias staging` is the current MLflow way to say
what older registries called the stage "Staging". The same artifact (same sha256) is
not registered twice unless `--force`.

Pull: `mlflow://NAME/VERSION`, `mlflow://NAME@ALIAS`, or `mlflow://NAME` (the newest
version). The tracking server comes from MLflow's own settings (MLFLOW_TRACKING_URI,
MLFLOW_REGISTRY_URI, credentials in MLFLOW_TRACKING_USERNAME/PASSWORD/TOKEN), or
`--publish-option tracking_uri=...` when publishing.

Modules: `settings` (the options schema), `uris` (mlflow:// URIs), `connection` (the
client, reaching the server, errors), `tags` (a version's tags and description),
`registry` (versions, experiments, aliases), `model` (the MLmodel and environment
files), `publishing` (publish), `pulling` (pull). Importing this module does not import
mlflow; nothing here needs more than the `mlflow-skinny` client.
"""

from __future__ import annotations

from onnxport.host import hookimpl
from onnxport.records import Option, Publisher, PublishRequest, PublishResult, Requirements

from .settings import Settings
from .uris import parse_uri


def publish(request: PublishRequest) -> PublishResult:
    from .publishing import publish as register

    return register(request)


def pull(uri, destination) -> None:
    from .pulling import pull as download

    download(uri, destination)


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


@hookimpl
def onnxport_add_options(options):
    commands = ("convert", "publish")
    options.add(Option(flags=("--run-id",), metavar="RUN_ID", commands=commands,
                       help="MLflow: log the artifact into this training run and link "
                            "the new model version to it"))
    options.add(Option(flags=("--alias",), metavar="ALIAS", commands=commands,
                       help="MLflow: point this alias at the new version, e.g. staging"))


__all__ = ["publish", "pull", "parse_uri", "Settings"]
