"""The Python API: the same work as the `onnxport` command, called from code."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

from onnxport.host import PluginHost, default_host
from onnxport.flow.pipeline import ConversionRequest, ConversionResult, TargetArtifact, run_conversion
from onnxport.records import InputSpec, Tolerance
from onnxport.flow.reverify import ArtifactCheck, verify_artifact
from onnxport.flow.sources import source_from_object, source_from_text
from onnxport.flow.verification import VerificationSettings

__all__ = ["convert", "verify", "publish", "pull", "ConversionResult", "TargetArtifact",
           "ArtifactCheck"]


def convert(
    model: Any,
    example_inputs: Any = None,
    *,
    output: str | Path,
    output_names: Iterable[str] | None = None,
    input_names: Iterable[str] | None = None,
    inputs: Iterable[InputSpec] = (),
    weights: str | Path | None = None,
    name: str | None = None,
    backend: str | None = None,
    exporter: str | None = None,
    opset: int | None = None,
    targets: Iterable[str] = ("cpu",),
    quantize: str | None = None,
    pass_options: Mapping[str, Mapping[str, Any]] | None = None,
    config: str | Path | None = None,
    dynamic_batch: bool = True,
    external_data: bool | None = None,
    seed: int = 0,
    data: str | Path | None = None,
    input_ranges: Mapping[str, tuple[float, float]] | None = None,
    tolerance: Tolerance | None = None,
    output_tolerances: Mapping[str, Tolerance] | None = None,
    classifiers: Iterable[str] | None = None,
    batch_sizes: Iterable[int] | None = None,
    latency_runs: int = 20,
    threads: int | None = None,
    overwrite: bool = False,
    keep_failed: bool = False,
    trust_code: bool = False,
    custom_objects: Iterable[str] | Mapping[str, Any] | None = None,
    host: PluginHost | None = None,
) -> ConversionResult:
    """Convert `model` to verified ONNX in the directory `output`.

    `model` is a framework model object, a path to a model file, or a factory string
    (`package.module:function`). `example_inputs` are a tensor, a tuple of tensors or a
    dict by input name (its keys become the ONNX input names). `custom_objects` are what a
    Keras file needs to load: `"module:name"` strings or a dict name -> object. Raises an
    `OnnxportError` subclass on failure; `VerificationFailed.result` holds the figures.
    """
    weights_path = Path(weights) if weights is not None else None
    if isinstance(model, (str, Path)) and example_inputs is None:
        source = source_from_text(str(model), weights_path)
    else:
        source = source_from_object(model, origin=_describe(model), weights=weights_path,
                                    example_inputs=example_inputs,
                                    output_names=output_names)
    request = ConversionRequest(
        source=source,
        output=Path(output),
        name=name,
        backend=backend,
        exporter=exporter,
        opset=opset,
        inputs=tuple(inputs),
        input_names=tuple(input_names) if input_names is not None else None,
        output_names=tuple(output_names) if output_names is not None else None,
        dynamic_batch=dynamic_batch,
        external_data=external_data,
        targets=tuple(targets),
        pass_options=_pass_options(pass_options, quantize),
        config=Path(config) if config is not None else None,
        trust_code=trust_code,
        backend_options={"custom_objects": custom_objects} if custom_objects else {},
        overwrite=overwrite,
        keep_failed=keep_failed,
        verification=VerificationSettings(
            seed=seed,
            batch_sizes=tuple(batch_sizes) if batch_sizes is not None else None,
            input_ranges=dict(input_ranges or {}),
            data=Path(data) if data is not None else None,
            tolerance=tolerance,
            output_tolerances=dict(output_tolerances or {}),
            latency_runs=latency_runs,
            threads=threads,
            classifiers=frozenset(classifiers or ()),
        ),
        made_by={"call": f"onnxport.convert({_describe(model)}, output={str(output)!r})"},
    )
    return run_conversion(request, host or default_host())


def verify(artifact: str | Path, source: Any = None, *, weights: str | Path | None = None,
           host: PluginHost | None = None, trust_code: bool = False,
           **settings: Any) -> list[ArtifactCheck]:
    """Check an existing artifact again: its files against the manifest's sha256, then
    its models against the source (by default the one recorded in the manifest).
    `trust_code` as for convert: a source that runs code when loaded needs it again."""
    return verify_artifact(Path(artifact), source, weights=weights,
                           host=host or default_host(), trust_code=trust_code, **settings)


def _pass_options(options: Mapping[str, Mapping[str, Any]] | None,
                  quantize: str | None) -> dict[str, dict[str, Any]]:
    merged = {name: dict(values) for name, values in (options or {}).items()}
    if quantize is not None:
        merged.setdefault("quantize", {})["mode"] = quantize
    return merged


def _describe(model: Any) -> str:
    if isinstance(model, (str, Path)):
        return str(model)
    return f"<{type(model).__module__}.{type(model).__qualname__}>"


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
