"""The Python API: the same work as the `onnxport` command, called from code."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Iterable

from onnxport.conversion import ConversionResult, TargetArtifact
from onnxport.flow.building import build_request
from onnxport.flow.reverify import ArtifactCheck, verify_artifact
from onnxport.host import PluginHost, default_host

__all__ = ["convert", "verify", "publish", "pull", "ConversionResult", "TargetArtifact",
           "ArtifactCheck"]


def convert(model: Any, example_inputs: Any = None, *, host: PluginHost | None = None,
            observers: Iterable[Any] = (), **options: Any) -> ConversionResult:
    """Convert `model` to verified ONNX in the directory `output`.

    `model` is a framework model object, a path to a model file, or a factory string
    (`package.module:function`). `example_inputs` are a tensor, a tuple of tensors or a
    dict by input name (its keys become the ONNX input names). The keyword options are
    `onnxport.flow.building.build_request`'s (the CLI's options, by their Python names);
    `observers` are objects with stage hooks (`onnxport_stage_started`, ...) that see
    this conversion only. Raises an `OnnxportError` subclass on failure;
    `VerificationFailed.result` holds the figures.
    """
    from onnxport.flow.pipeline import run_conversion

    request = build_request(model, example_inputs, **options)
    return run_conversion(request, host or default_host(), observers)


def _signature_of_convert() -> inspect.Signature:
    """convert's signature as help() and editors show it: build_request's options."""
    built = inspect.signature(build_request).parameters.values()
    own = inspect.signature(convert).parameters
    options = [p for p in built if p.kind is p.KEYWORD_ONLY and p.name != "made_by"]
    return inspect.Signature([own["model"], own["example_inputs"], *options, own["host"],
                              own["observers"]],
                             return_annotation=inspect.signature(convert).return_annotation)


convert.__signature__ = _signature_of_convert()  # type: ignore[attr-defined]


def verify(artifact: str | Path, source: Any = None, *, weights: str | Path | None = None,
           host: PluginHost | None = None, trust_code: bool = False,
           **settings: Any) -> list[ArtifactCheck]:
    """Check an existing artifact again: its files against the manifest's sha256, then
    its models against `source` (a model, a model file or a factory you name; the
    manifest's own source is used only with `trust_code=True`, since running what an
    artifact names runs its code)."""
    return verify_artifact(Path(artifact), source, weights=weights,
                           host=host or default_host(), trust_code=trust_code, **settings)


def publish(artifact: str | Path, uri: str, *, host: PluginHost | None = None,
            **options: Any):
    """Publish an artifact directory to `uri` (s3://, mlflow://, file://) after checking
    its files; options: create_bucket, run_id, alias, force. Returns a PublishResult."""
    from onnxport.artifact.publishing import publish as publish_artifact

    return publish_artifact(Path(artifact), uri, host or default_host(), options)


def pull(uri: str, output: str | Path, *, overwrite: bool = False,
         host: PluginHost | None = None) -> Path:
    """Fetch a published artifact into `output`, checked against its manifests."""
    from onnxport.artifact.publishing import pull as pull_artifact

    return pull_artifact(uri, Path(output), host or default_host(), overwrite)
