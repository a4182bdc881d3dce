"""skl2onnx conversion into one self-contained .onnx file with the planned interface.

Classifiers are converted without ZipMap, so their outputs are plain tensors (`label`
int64, `probabilities` float32) that onnxport can compare; non-numeric class labels are
exported as indices into `classes_` (recorded in the model's metadata). The known
skl2onnx failures are put in words: an estimator it has no converter for is named.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any

import onnx
import skl2onnx
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType

from onnxport.errors import BadInput, ExportFailed
from onnxport.records import ExportRequest, ExportResult, LoadedModel

from . import MIN_OPSET
from .onnxgraph import finish_graph

EXPORTER = "skl2onnx"
PROTOBUF_LIMIT = 2 * 1024**3
SUPPORTED = "https://onnx.ai/sklearn-onnx/supported.html"


def max_opset() -> int:
    """The newest opset this skl2onnx writes correctly (it does not refuse newer ones)."""
    from onnx.defs import onnx_opset_version

    return min(int(skl2onnx.__max_supported_opset__), onnx_opset_version())


def export(loaded: LoadedModel, request: ExportRequest) -> ExportResult:
    exporter = request.exporter or EXPORTER
    if exporter != EXPORTER:
        raise BadInput(f"the sklearn backend has no exporter {exporter!r}",
                       f"it has one: {EXPORTER}")
    highest = max_opset()
    if request.opset is not None and not MIN_OPSET <= request.opset <= highest:
        raise BadInput(f"opset {request.opset} cannot be produced by skl2onnx "
                       f"{skl2onnx.__version__}", f"choose an opset from {MIN_OPSET} to "
                       f"{highest}, or leave --opset out for {highest}")
    details = loaded.details
    input_name = loaded.input_names[0]
    example = loaded.example_inputs[input_name]
    batch = None if request.dynamic_batch else int(example.shape[0])
    options: dict[str, Any] = {}
    if details["kind"] == "classifier":
        options["zipmap"] = False
        if details["label"] != "class":
            options["nocl"] = True
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = _convert(loaded.model, loaded.description,
                         [(input_name, FloatTensorType([batch, int(example.shape[1])]))],
                         options, request.opset)
    model = finish_graph(model, input_name=input_name, output_names=loaded.output_names,
                         output_shapes=details["output_shapes"], batch=batch,
                         metadata=_metadata(loaded))
    path = Path(request.output_path)
    files = _save(model, path, request.external_data)
    opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    return ExportResult(
        path=path, exporter=EXPORTER, opset=opsets.get("ai.onnx", 0), files=files,
        warnings=_relevant(caught),
        details={"skl2onnx": skl2onnx.__version__, "opsets": opsets, "zipmap": False,
                 "dynamic_batch": request.dynamic_batch})


def _convert(model: Any, name: str, initial_types: list, options: dict[str, Any],
             opset: int | None) -> onnx.ModelProto:
    """to_onnx, retried for the two requests skl2onnx makes in its error messages."""
    target: Any = opset
    for _ in range(3):
        try:
            return to_onnx(model, initial_types=initial_types, target_opset=target,
                           options={id(model): dict(options)} if options else None)
        except NameError as exc:  # an option this estimator's converter does not take
            refused = re.search(r"Option '(\w+)' not in", str(exc))
            if refused and refused.group(1) == "zipmap" and "zipmap" in options:
                options.pop("zipmap")  # it has no ZipMap to remove
                continue
            if refused and refused.group(1) == "nocl":
                raise ExportFailed(
                    f"{name} has non-integer class labels, and skl2onnx's converter for "
                    "it cannot output them as indices (the ONNX label must be numeric "
                    "for onnxport to verify it)",
                    "fit it on integer labels (sklearn.preprocessing.LabelEncoder) and "
                    "map them back after inference") from exc
            raise translate_error(exc, name, opset) from exc
        except RuntimeError as exc:  # "You need to specify target_opset={'ai.onnx.ml': 3}"
            ml = re.search(r"target_opset=\{'ai\.onnx\.ml': (\d+)\}", str(exc))
            if ml and not isinstance(target, dict):
                target = {"": opset or max_opset(), "ai.onnx.ml": int(ml.group(1))}
                continue
            raise translate_error(exc, name, opset) from exc
        except (BadInput, ExportFailed):
            raise
        except Exception as exc:
            raise translate_error(exc, name, opset) from exc
    raise ExportFailed(f"skl2onnx could not convert {name} (it kept asking for other "
                       "options)", "run with --debug for the full error")


def translate_error(exc: Exception, name: str, opset: int | None) -> ExportFailed:
    """skl2onnx's errors in one line: the estimator it cannot convert is named."""
    text = str(exc)
    if type(exc).__name__ in ("MissingShapeCalculator", "MissingConverter") or \
            re.search(r"Unable to find a (shape calculator|converter)", text):
        found = re.search(r"type '<class '([\w.]+)'>'", text)
        qualified = found.group(1) if found else "an estimator"
        short = qualified.rsplit(".", 1)[-1]
        where = "" if short == name else f" (in {name})"
        return ExportFailed(
            f"skl2onnx has no converter for {short}{where}: {qualified} cannot be "
            "exported to ONNX",
            f"use estimators skl2onnx supports ({SUPPORTED}), or register a converter "
            "for it with skl2onnx.update_registered_converter before converting")
    cause = exc.__cause__ or exc.__context__
    because = f" ({type(cause).__name__}: {_first_line(cause)})" if cause else ""
    return ExportFailed(
        f"skl2onnx {skl2onnx.__version__} could not convert {name}: "
        f"{type(exc).__name__}: {_first_line(exc)}{because}",
        "run with --debug for skl2onnx's full error" +
        (f"; opset {opset} was asked for, try without --opset" if opset else ""))


def _metadata(loaded: LoadedModel) -> dict[str, str]:
    details = loaded.details
    metadata = {"onnxport.sklearn.estimator": loaded.description,
                "onnxport.sklearn.outputs": json.dumps(details["outputs"])}
    if "classes" in details:
        metadata["onnxport.sklearn.classes"] = json.dumps(details["classes"])
        metadata["onnxport.sklearn.label"] = details["label"]
    return metadata


def _save(model: onnx.ModelProto, path: Path, external: bool | None) -> list[Path]:
    """One .onnx file; tensors in `NAME.data` beside it only if asked or past 2 GB."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if external is None:
        external = model.ByteSize() > PROTOBUF_LIMIT * 0.9
    try:
        if external:
            onnx.save_model(model, str(path), save_as_external_data=True,
                            all_tensors_to_one_file=True, location=path.name + ".data",
                            size_threshold=1024)
        else:
            onnx.save_model(model, str(path))
    except ValueError as exc:
        raise ExportFailed(f"the converted model does not fit in one ONNX file: "
                           f"{_first_line(exc)}",
                           "tree ensembles keep their nodes in attributes, which cannot "
                           "move to external data: use fewer or shallower trees") from exc
    side = path.with_name(path.name + ".data")
    return [side] if side.is_file() else []


def _relevant(caught: list[warnings.WarningMessage]) -> list[str]:
    notes = []
    for w in caught:
        if issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning)):
            continue
        line = _first_line(w.message)
        if line and line not in notes:
            notes.append(line)
    return notes


def _first_line(exc: BaseException | Warning | str, limit: int = 200) -> str:
    text = str(exc).strip()
    text = re.split(r" and attributes=|\n", text, maxsplit=1)[0]  # skl2onnx dumps arrays
    return text if len(text) <= limit else text[:limit - 3] + "..."
