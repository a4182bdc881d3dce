"""One way from options to a `ConversionRequest`: the CLI, `onnxport.convert()`, fleets
and the service all call `build_request`, so an option is added (and checked) once.

Building a request runs no user code: a factory is recorded by name and called by the
flow, after the output directory has been checked, inside the load stage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

from onnxport.artifact.names import checked_name
from onnxport.conversion import ConversionRequest, VerificationSettings
from onnxport.errors import BadInput
from onnxport.flow.candidates import LEVELS
from onnxport.flow.config import find_config
from onnxport.flow.inputs import normalized_dynamic_axes
from onnxport.flow.sources import source_from_object, source_spec
from onnxport.records import InputSpec, Source, Tolerance
from onnxport.tolerance import settings_from_json, settings_to_json, with_overrides


def build_request(
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
    optimize: str = "fast",
    calibration_data: str | Path | None = None,
    latency_budget: float | str | tuple[float, int] | None = None,
    require_budget: bool = False,
    config: str | Path | None = None,
    enable: Iterable[str] = (),
    dynamic_batch: bool = True,
    dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
    external_data: bool | None = None,
    seed: int = 0,
    data: str | Path | None = None,
    input_ranges: Mapping[str, tuple[float, float]] | None = None,
    tolerance: Tolerance | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    output_tolerances: Mapping[str, Tolerance] | None = None,
    classifiers: Iterable[str] | None = None,
    allow_nonfinite: bool = False,
    batch_sizes: Iterable[int] | None = None,
    latency_runs: int = 20,
    threads: int | None = None,
    overwrite: bool = False,
    keep_failed: bool = False,
    trust_code: bool = False,
    custom_objects: Iterable[str] | Mapping[str, Any] | None = None,
    backend_options: Mapping[str, Any] | None = None,
    made_by: Mapping[str, Any] | None = None,
) -> ConversionRequest:
    """A checked request to convert `model` into the artifact directory `output`.

    `model` is a framework model object (with `example_inputs`), a model file, or a
    factory `package.module:function` / `path/file.py:function`. `quantize` ("off",
    "on", "auto") sets every target's quantize mode; `atol`/`rtol` replace the budget
    of every output (`tolerance` gives a whole `Tolerance`); `config` is a targets file
    (default: ./onnxport.toml or [tool.onnxport] in ./pyproject.toml, when present).
    `dynamic_axes` declares axes beyond the batch that vary, by input name:
    `{"input_ids": {1: "sequence"}}` (inputs sharing an axis name vary together; each
    axis is exported symbolic and verified at two sizes). `backend_options` reach the
    backend's `LoadRequest.options` and `ExportRequest.options` (e.g. `{"task":
    "text-classification"}` for the transformers backend).
    """
    weights_path = Path(weights) if weights is not None else None
    if weights_path is not None and not weights_path.is_file():
        raise BadInput(f"--weights {weights_path} does not exist")
    if isinstance(model, (str, Path)) and example_inputs is None:
        source = source_spec(str(model), weights_path)
    else:
        source = source_from_object(model, origin=describe(model), weights=weights_path,
                                    example_inputs=example_inputs,
                                    output_names=output_names)
    _at_least("--latency-runs", latency_runs, 0)
    _at_least("--threads", threads, 1)
    _at_least("--opset", opset, 1)
    sizes = tuple(batch_sizes) if batch_sizes is not None else None
    for size in sizes or ():
        _at_least("--batch-sizes", size, 1)
    if atol is not None or rtol is not None:
        tolerance = with_overrides(tolerance or Tolerance(), atol, rtol)
    if optimize not in LEVELS:
        raise BadInput(f"--optimize {optimize!r}: choose one of {', '.join(LEVELS)}")
    calibration = Path(calibration_data) if calibration_data is not None else None
    if calibration is not None and not calibration.exists():
        raise BadInput(f"--calibration-data {calibration} does not exist")
    found = find_config(Path(config) if config is not None else None)
    axes = normalized_dynamic_axes(dynamic_axes)
    options = {str(k): (str(v) if isinstance(v, Path) else v)
               for k, v in (backend_options or {}).items()}
    if custom_objects:
        options["custom_objects"] = custom_objects
    return ConversionRequest(
        source=source,
        output=Path(output),
        name=checked_name(name, "--name") if name is not None else None,
        backend=backend,
        exporter=exporter,
        opset=opset,
        inputs=tuple(inputs),
        input_names=tuple(input_names) if input_names is not None else None,
        output_names=tuple(output_names) if output_names is not None else None,
        dynamic_batch=dynamic_batch,
        dynamic_axes=axes,
        external_data=external_data,
        targets=tuple(targets) or ("cpu",),
        pass_options=merge_pass_options(pass_options, quantize),
        optimize=optimize,
        calibration_data=calibration,
        latency_budget=_budget(latency_budget),
        require_budget=require_budget,
        config=found[0] if found is not None else None,
        enable=tuple(enable),
        trust_code=trust_code,
        overwrite=overwrite,
        keep_failed=keep_failed,
        backend_options=options,
        verification=VerificationSettings(
            seed=seed,
            batch_sizes=sizes,
            input_ranges=dict(input_ranges or {}),
            data=Path(data) if data is not None else None,
            tolerance=tolerance,
            output_tolerances=dict(output_tolerances or {}),
            latency_runs=latency_runs,
            threads=threads,
            classifiers=frozenset(classifiers or ()),
            allow_nonfinite=allow_nonfinite,
            dynamic_axes=axes,
        ),
        made_by=dict(made_by) if made_by is not None else {
            "call": f"onnxport.convert({describe(model)}, output={str(output)!r})"},
    )


def merge_pass_options(options: Mapping[str, Mapping[str, Any]] | None,
                       quantize: str | None) -> dict[str, dict[str, Any]]:
    """Per-pass options for every target, with `quantize` as the quantize pass's mode."""
    merged = {name: dict(values) for name, values in (options or {}).items()}
    if quantize is not None:
        merged.setdefault("quantize", {})["mode"] = quantize
    return merged


def describe(model: Any) -> str:
    """How a model is named in the report: its path or factory, or its type."""
    if isinstance(model, (str, Path)):
        return str(model)
    return f"<{type(model).__module__}.{type(model).__qualname__}>"


def _at_least(flag: str, value: int | None, low: int) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                              or value < low):
        raise BadInput(f"{flag} {value}: must be a whole number >= {low}")


# --------------------------------------------------------------------------- JSON


def request_to_json(request: ConversionRequest) -> dict[str, Any]:
    """A request as plain JSON, to run it in another process (a worker, a Ray task, a
    service's job). Only a source named by path or factory can travel: an object lives
    in this process alone."""
    source = request.source
    if source.kind not in ("path", "factory"):
        raise BadInput(f"{source.origin} is a Python object, which cannot be sent to "
                       "another process", "give a factory (module:function) or a model "
                       "file instead, or convert in this process")
    settings = request.verification
    return {
        "source": {"kind": source.kind, "origin": source.origin,
                   "weights": _text(source.weights)},
        "output": str(request.output), "name": request.name, "backend": request.backend,
        "exporter": request.exporter, "opset": request.opset,
        "inputs": [[s.name, list(s.shape), s.dtype] for s in request.inputs],
        "input_names": _list(request.input_names),
        "output_names": _list(request.output_names),
        "dynamic_batch": request.dynamic_batch,
        "dynamic_axes": {name: {str(axis): label for axis, label in axes.items()}
                         for name, axes in request.dynamic_axes.items()},
        "external_data": request.external_data,
        "targets": list(request.targets), "pass_options": request.pass_options,
        "optimize": request.optimize, "calibration_data": _text(request.calibration_data),
        "latency_budget": list(request.latency_budget) if request.latency_budget else None,
        "require_budget": request.require_budget,
        "config": _text(request.config), "enable": list(request.enable),
        "trust_code": request.trust_code, "overwrite": request.overwrite,
        "keep_failed": request.keep_failed, "backend_options": request.backend_options,
        "made_by": request.made_by,
        "verification": {**settings_to_json(settings), "threads": settings.threads},
    }


def request_from_json(data: Mapping[str, Any]) -> ConversionRequest:
    """The request `request_to_json` wrote."""
    source = data["source"]
    weights = Path(source["weights"]) if source.get("weights") else None
    recorded = dict(data["verification"])
    threads = recorded.pop("threads", None)
    settings = VerificationSettings(**{**settings_from_json(recorded), "threads": threads})
    return ConversionRequest(
        source=Source(kind=source["kind"], value=source["origin"] if source["kind"] ==
                      "factory" else Path(source["origin"]), origin=source["origin"],
                      weights=weights),
        output=Path(data["output"]), name=data.get("name"), backend=data.get("backend"),
        exporter=data.get("exporter"), opset=data.get("opset"),
        inputs=tuple(InputSpec(n, tuple(s), d) for n, s, d in data.get("inputs", [])),
        input_names=_tuple(data.get("input_names")),
        output_names=_tuple(data.get("output_names")),
        dynamic_batch=data.get("dynamic_batch", True),
        dynamic_axes=normalized_dynamic_axes(data.get("dynamic_axes")),
        external_data=data.get("external_data"), targets=tuple(data["targets"]),
        pass_options=dict(data.get("pass_options") or {}),
        optimize=data.get("optimize", "fast"),
        latency_budget=_budget(data.get("latency_budget")),
        require_budget=data.get("require_budget", False),
        calibration_data=Path(data["calibration_data"]) if data.get("calibration_data")
        else None,
        config=Path(data["config"]) if data.get("config") else None,
        enable=tuple(data.get("enable", ())), trust_code=data.get("trust_code", False),
        overwrite=data.get("overwrite", False), keep_failed=data.get("keep_failed", False),
        verification=settings, backend_options=dict(data.get("backend_options") or {}),
        made_by=dict(data.get("made_by") or {}))


def _budget(value: Any) -> tuple[float, int] | None:
    """A latency budget as given: 50, "50@8", or (50, 8)."""
    from onnxport.flow.budget import parse_budget

    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return parse_budget(f"{value[0]}@{value[1]}")
    return parse_budget(str(value))


def _text(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _list(values: tuple[str, ...] | None) -> list[str] | None:
    return None if values is None else list(values)


def _tuple(values: list[str] | None) -> tuple[str, ...] | None:
    return None if values is None else tuple(values)
