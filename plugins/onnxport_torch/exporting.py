"""torch.onnx export with either exporter, into one self-contained file when it fits.

Models under 2 GB are written as a single .onnx (no stray .data side file); larger
ones keep their weights in external data beside the model, listed in the result.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import warnings
from pathlib import Path

import torch

from onnxport.errors import BadInput, ExportFailed
from onnxport.records import ExportRequest, ExportResult, LoadedModel

PROTOBUF_LIMIT = 2 * 1024**3
_HEADROOM = 0.9  # graph structure and constants also count against the 2 GB


def export(loaded: LoadedModel, request: ExportRequest) -> ExportResult:
    exporter = request.exporter or "dynamo"
    model = loaded.model
    is_program = isinstance(model, torch.export.ExportedProgram)
    if is_program and exporter != "dynamo":
        raise BadInput("a .pt2 ExportedProgram can only be exported with the dynamo "
                       "exporter", "drop --exporter torchscript")
    args = tuple(torch.from_numpy(loaded.example_inputs[n]) for n in loaded.input_names)
    path = Path(request.output_path)
    external = request.external_data
    if external is None:
        external = _weight_bytes(model) > PROTOBUF_LIMIT * _HEADROOM
    captured = io.StringIO()
    with warnings.catch_warnings(record=True) as caught, \
            contextlib.redirect_stdout(captured), _quiet_torch_logs():
        warnings.simplefilter("always")
        try:
            if exporter == "dynamo":
                _export_dynamo(model, args, path, loaded, request, is_program, external)
            else:
                _export_torchscript(model, args, path, loaded, request, external)
        except (BadInput, ExportFailed):
            raise
        except Exception as exc:
            raise translate_export_error(exc, exporter, request.opset) from exc
    import onnx

    opset = next((o.version for o in onnx.load(str(path), load_external_data=False)
                  .opset_import if o.domain in ("", "ai.onnx")), 0)
    side_files = sorted(p for p in path.parent.iterdir() if p != path and p.is_file())
    return ExportResult(
        path=path, exporter=exporter, opset=opset, files=side_files,
        warnings=_relevant_warnings(caught),
        details={"torch": torch.__version__, "external_data": external,
                 "dynamic_batch": request.dynamic_batch})


def _export_dynamo(model, args, path: Path, loaded: LoadedModel, request: ExportRequest,
                   is_program: bool, external: bool) -> None:
    dynamic_shapes = None
    if request.dynamic_batch and not is_program:
        batch = torch.export.Dim("batch", min=1, max=1 << 20)
        dynamic_shapes = tuple({0: batch} for _ in args)
    program = torch.onnx.export(
        model, args, dynamo=True, verbose=False, input_names=loaded.input_names,
        output_names=loaded.output_names, opset_version=request.opset,
        dynamic_shapes=dynamic_shapes, optimize=True, verify=False)
    program.save(str(path), external_data=external)


def _export_torchscript(model, args, path: Path, loaded: LoadedModel,
                        request: ExportRequest, external: bool) -> None:
    dynamic_axes = None
    if request.dynamic_batch:
        dynamic_axes = {name: {0: "batch"}
                        for name in [*loaded.input_names, *loaded.output_names]}
    torch.onnx.export(
        model, args, str(path), dynamo=False, verbose=False,
        input_names=loaded.input_names, output_names=loaded.output_names,
        opset_version=request.opset, dynamic_axes=dynamic_axes)
    if external and not any(p != path for p in path.parent.iterdir()):
        import onnx  # torch only writes external data by itself past 2 GB

        onnx.save_model(onnx.load(str(path)), str(path), save_as_external_data=True,
                        all_tensors_to_one_file=True, location=path.name + ".data",
                        size_threshold=1024)


def translate_export_error(exc: Exception, exporter: str, opset: int | None) -> Exception:
    """The common export failures, in words a user can act on."""
    text = f"{exc}\n{exc.__cause__ or ''}"
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    unsupported = re.search(r"operator '([\w:.]+)' to ONNX opset version (\d+)", text)
    if unsupported:
        op, at = unsupported.groups()
        added = re.search(r"added in version (\d+)", text)
        hint = (f"convert with --opset {added.group(1)} or later" if added else
                "replace it in the model with supported ops, or try the other exporter")
        return ExportFailed(f"the operator {op} cannot be exported at opset {at}", hint)
    if re.search(r"data.dependent|GuardOnDataDependent|Could not guard on data", text,
                 re.IGNORECASE):
        return ExportFailed(
            "the model has data-dependent control flow (a Python branch or loop on tensor "
            f"values), which the {exporter} exporter cannot trace: {first}",
            "use torch.where or torch.cond instead of if on tensor values")
    if re.search(r"Constraints violated|specializ|not dynamic", text, re.IGNORECASE):
        return ExportFailed(
            f"the model fixes the batch dimension, so it cannot be exported with a "
            f"dynamic batch: {first}",
            "use x.shape[0] or -1 in reshape/view instead of a constant, or pass "
            "--static-batch")
    if re.search(r"opset", text, re.IGNORECASE) and opset is not None:
        return ExportFailed(f"the {exporter} exporter cannot produce opset {opset}: "
                            f"{first}", "choose another --opset")
    return ExportFailed(f"torch.onnx ({exporter}) failed: {type(exc).__name__}: {first}",
                        "run with --debug for the exporter's full error")


def _weight_bytes(model) -> int:
    if isinstance(model, torch.export.ExportedProgram):
        tensors = list(model.state_dict.values())
    else:
        tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


@contextlib.contextmanager
def _quiet_torch_logs():
    """torch.onnx logs optional-package notices (torchvision) at WARNING: hide them."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


_EXPORTER_PACKAGES = ("torch", "onnxscript", "onnx_ir", "onnx", "onnxport_torch")


def _package_dir(name: str) -> str:
    import importlib.util

    spec = importlib.util.find_spec(name)
    origin = spec.origin if spec and spec.origin else f"/nonexistent/{name}"
    return str(Path(origin).parent)


def _relevant_warnings(caught) -> list[str]:
    """Warnings raised from the user's code (tracer warnings on their forward(), ...);
    torch's notes about its own internals and deprecations are left out."""
    import sysconfig

    internal_dirs = (*(_package_dir(name) for name in _EXPORTER_PACKAGES),
                     sysconfig.get_paths()["stdlib"])
    messages = []
    for warning in caught:
        text = (str(warning.message).strip().splitlines() or [""])[0]
        internal = str(warning.filename).startswith((*internal_dirs, "<"))  # "<": fx code
        deprecation = issubclass(warning.category, DeprecationWarning)
        if text and not internal and not deprecation and text not in messages:
            messages.append(text)
    return messages[:10]
