"""torch.onnx export with either exporter, into one self-contained file when it fits.

Models under 2 GB are written as a single .onnx (no stray .data side file); larger
ones keep their weights in external data beside the model, listed in the result.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from onnxport.errors import BadInput, ExportFailed
from onnxport.records import ExportRequest, ExportResult, LoadedModel

from .binding import KEYWORD, binding_of

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
    axes = dynamic_axes_of(loaded, request)
    if axes and is_program:
        raise BadInput("a .pt2 ExportedProgram keeps the shapes it was exported with, so "
                       "its axes cannot be made dynamic here",
                       "export the program with dynamic_shapes, or convert the nn.Module")
    binding, arguments = binding_of(loaded)
    by_name = binding == KEYWORD and not is_program
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
                kwargs = dict(zip(arguments, args)) if by_name else None
                _export_dynamo(model, () if by_name else args, kwargs, path, loaded,
                               request, is_program, external, axes, arguments)
            else:
                with _forward_by_name(model, arguments) if by_name \
                        else contextlib.nullcontext():
                    _export_torchscript(model, args, path, loaded, request, external,
                                        axes)
        except (BadInput, ExportFailed):
            raise
        except Exception as exc:
            raise translate_export_error(exc, exporter, request.opset, axes) from exc
    written = _inputs_in_order(path, loaded.input_names)
    opset = next((o.version for o in written.opset_import
                  if o.domain in ("", "ai.onnx")), 0)
    side_files = sorted(p for p in path.parent.iterdir() if p != path and p.is_file())
    return ExportResult(
        path=path, exporter=exporter, opset=opset, files=side_files,
        warnings=_relevant_warnings(caught),
        details={"torch": torch.__version__, "external_data": external,
                 "dynamic_batch": request.dynamic_batch,
                 **({"dynamic_axes": {n: {str(a): label for a, label in p.items()}
                                      for n, p in axes.items()}} if axes else {})})


def dynamic_axes_of(loaded: LoadedModel, request: ExportRequest
                    ) -> dict[str, dict[int, str]]:
    """The axes beyond the batch to keep symbolic: the loaded model's (the user's, checked
    when loading, and any its backend inferred) and any the export request declares,
    checked against the inputs."""
    from onnxport.flow.inputs import checked_dynamic_axes, normalized_dynamic_axes

    merged = {name: dict(p) for name, p in (loaded.dynamic_axes or {}).items()}
    for name, per_input in normalized_dynamic_axes(request.dynamic_axes).items():
        merged.setdefault(name, {}).update(per_input)
    shapes = {n: tuple(loaded.example_inputs[n].shape) for n in loaded.input_names}
    return checked_dynamic_axes(merged, shapes, request.dynamic_batch)


def _export_dynamo(model, args, kwargs, path: Path, loaded: LoadedModel,
                   request: ExportRequest, is_program: bool, external: bool,
                   axes: dict[str, dict[int, str]] | None = None,
                   arguments: list[str] | None = None) -> None:
    """`kwargs` (forward()'s argument name -> tensor, in the ONNX input order) when the
    inputs are passed by name: torch.export keeps the dict's order, and each ONNX input
    feeds the parameter of its name. Every axis name is one `torch.export.Dim`, shared
    by the inputs that declare it, so they vary together."""
    dynamic_shapes = None
    axes = axes or {}
    if (request.dynamic_batch or axes) and not is_program:
        dims: dict[str, Any] = {}

        def dim(label: str):
            if label not in dims:
                dims[label] = torch.export.Dim(label, min=1, max=1 << 20)
            return dims[label]

        per_input = []
        for name in loaded.input_names:
            spec = {0: dim("batch")} if request.dynamic_batch else {}
            spec.update({axis: dim(label) for axis, label in axes.get(name, {}).items()})
            per_input.append(spec or None)
        if kwargs:
            by_argument = dict(zip(arguments or list(kwargs), per_input))
            dynamic_shapes = _keyword_dynamic_shapes(model, kwargs, by_argument)
        else:
            dynamic_shapes = tuple(per_input)
    program = torch.onnx.export(
        model, args, kwargs=kwargs, dynamo=True, verbose=False,
        input_names=loaded.input_names,
        output_names=loaded.output_names, opset_version=request.opset,
        dynamic_shapes=dynamic_shapes, optimize=True, verify=False)
    program.save(str(path), external_data=external)


def _export_torchscript(model, args, path: Path, loaded: LoadedModel,
                        request: ExportRequest, external: bool,
                        axes: dict[str, dict[int, str]] | None = None) -> None:
    dynamic_axes = None
    axes = axes or {}
    if request.dynamic_batch or axes:
        batch = {0: "batch"} if request.dynamic_batch else {}
        dynamic_axes = {name: {**batch, **axes.get(name, {})}
                        for name in [*loaded.input_names, *loaded.output_names]}
        dynamic_axes = {name: spec for name, spec in dynamic_axes.items() if spec}
    torch.onnx.export(
        model, args, str(path), dynamo=False, verbose=False,
        input_names=loaded.input_names, output_names=loaded.output_names,
        opset_version=request.opset, dynamic_axes=dynamic_axes)
    if external and not any(p != path for p in path.parent.iterdir()):
        import onnx  # torch only writes external data by itself past 2 GB

        onnx.save_model(onnx.load(str(path)), str(path), save_as_external_data=True,
                        all_tensors_to_one_file=True, location=path.name + ".data",
                        size_threshold=1024)


def _keyword_dynamic_shapes(model, kwargs: dict, by_argument: dict) -> dict:
    """dynamic_shapes for inputs passed by name, shaped as torch.export binds them to
    forward(): a named parameter by its name, the ones **kwargs collects under its
    name. `by_argument` holds each argument's {axis: Dim} (None: static)."""
    signature = inspect.signature(model.forward)
    shapes: dict = {}
    for name, value in signature.bind(**kwargs).arguments.items():
        if signature.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
            shapes[name] = {key: by_argument.get(key) for key in value}
        else:
            shapes[name] = by_argument.get(name)
    return shapes


_UNSET = object()


@contextlib.contextmanager
def _forward_by_name(model, arguments: list[str]):
    """For the TorchScript exporter only: while it traces, forward() takes the inputs by
    position, in the ONNX input order, and hands them on by name.

    Its own `kwargs=` is not enough: it binds them to forward()'s named parameters in the
    signature's order (not the dict's, so positional input names would be wrong), drops
    a key only **kwargs takes, and passes every other parameter's default into the trace,
    where a Python number becomes a tensor input (GPT-2's `logits_to_keep=0` turns into
    an ONNX input and changes the logits' shape). The instance attribute is removed
    afterwards; the model's class is not touched, so its module scopes (node names) stay
    the same."""
    own = model.__dict__.get("forward", _UNSET)
    original = model.forward

    def forward(*tensors):
        return original(**dict(zip(arguments, tensors)))

    model.forward = forward
    try:
        yield
    finally:
        if own is _UNSET:
            del model.forward
        else:
            model.forward = own


def _inputs_in_order(path: Path, names: list[str]):
    """The written model (weights not loaded), its graph inputs put in `names`' order if
    the exporter wrote the same inputs in another order (only then is the file
    rewritten)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    inputs = list(model.graph.input)
    initializers = {t.name for t in model.graph.initializer}
    found = [i.name for i in inputs if i.name not in initializers]
    if found == list(names) or sorted(found) != sorted(names):
        return model
    by_name = {i.name: i for i in inputs}
    ordered = [by_name[n] for n in names] + [i for i in inputs if i.name in initializers]
    copies = []
    for value in ordered:
        copy = onnx.ValueInfoProto()
        copy.CopyFrom(value)
        copies.append(copy)
    del model.graph.input[:]
    model.graph.input.extend(copies)
    onnx.save_model(model, str(path))
    return model


def translate_export_error(exc: Exception, exporter: str, opset: int | None,
                           axes: dict[str, dict[int, str]] | None = None) -> Exception:
    """The common export failures, in words a user can act on: an unsupported operator
    (named, with the opset or exporter that has it), data-dependent control flow (where,
    and what to write instead), a batch size fixed inside the model, and input or output
    names deployment code could not look up. The original error stays chained (`raise
    ... from`), so `--debug` shows it in full."""
    text = "\n".join(_plain(str(e)) for e in _chain(exc))
    summary = _summary(exc)
    where = _where(exc)
    at = f" at {where}" if where else ""

    names = re.search(r"(Input|Output) names cannot be duplicated: \[([^\]]*)\]", text)
    if names:
        kind, repeated = names.group(1).lower(), names.group(2)
        flag = "--input-names" if kind == "input" else "--output-names"
        return ExportFailed(
            f"two ONNX {kind}s would both be named {repeated}: deployment code looks "
            f"{kind}s up by name (the course module's 'Input name not found'), so each "
            "needs its own",
            f"give every {kind} a distinct name, in forward()'s order, with {flag} A,B")

    unsupported = _unsupported_operator(text, exc)
    if unsupported is not None:
        op, at_opset, added = unsupported
        node = _fx_node(exc)
        original = node.meta.get("original_aten") if node is not None else None
        if original is not None:  # what the user called, before torch decomposed it
            name = str(original).rpartition(".")[0].replace(".", "::", 1)
            op = op if name == op else f"{name} ({op} after decomposition)"
        if added:
            return ExportFailed(
                f"the operator {op}{at} cannot be exported at opset {at_opset}: ONNX has "
                f"it from opset {added}", f"convert with --opset {added} or later")
        other = _other_exporter_support(op.split(" ")[0], exporter, exc)
        opset_text = f" at opset {at_opset}" if at_opset else ""
        message = (f"the operator {op}{at} has no ONNX translation in the {exporter} "
                   f"exporter{opset_text}")
        if other:
            return ExportFailed(message, other)
        return ExportFailed(message + ", and neither exporter has it at any opset",
                            "replace it in the model with ops ONNX has (or register a "
                            "custom translation), then convert again")

    if re.search(r"data.dependent|GuardOnDataDependent|Could not guard on data",
                 text, re.IGNORECASE):
        code = (where.rpartition(": ")[2] if where else "").strip("`")
        if re.match(r"\s*(while|for)\b", code):
            fix = ("run the loop a fixed number of times (or unroll it), or express it "
                   "with torch.while_loop / tensor ops")
        elif ".item()" in code or re.search(r"\b(int|float|bool)\(", code):
            fix = "keep the value a tensor instead of turning it into a Python number"
        else:
            fix = ("compute both branches and pick with torch.where(condition, a, b), or "
                   "use torch.cond")
        return ExportFailed(
            f"the model has data-dependent control flow{at}: the {exporter} exporter "
            "cannot trace a Python branch or loop on tensor values", fix)

    fixed = _fixed_axes(text, axes or {})
    if fixed and re.search(r"Constraints violated|specializ|not dynamic|not in VR\[",
                           text, re.IGNORECASE):
        return ExportFailed(
            f"the model fixes the size of the dynamic ax{'i' if len(fixed) == 1 else 'e'}s "
            f"{', '.join(fixed)}{at}, so it cannot be exported varying ({summary})",
            "use x.shape[AXIS] (or -1 in reshape) instead of a constant for that size in "
            "the model, or leave the axis out of --dynamic")

    if _lost_batch(text):
        return ExportFailed(
            f"the model fixes the batch size{at}, so it cannot be exported with a dynamic "
            f"batch ({summary}); onnxport traces a dynamic batch with at least 2 rows, so "
            "a tensor made for batch 1 (an initial state, a buffer) no longer fits",
            "build such tensors from the input inside forward() (e.g. "
            "torch.zeros(1, x.shape[0], hidden)) and use x.shape[0] or -1 instead of a "
            "constant in reshape/view; or convert with --static-batch")

    if re.search(r"opset", text, re.IGNORECASE) and opset is not None:
        return ExportFailed(f"the {exporter} exporter cannot produce opset {opset}: "
                            f"{summary}", "choose another --opset")
    return ExportFailed(f"torch.onnx ({exporter}) failed{at}: {summary}",
                        "run with --debug for the exporter's full error")


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _plain(text: str) -> str:
    return _ANSI.sub("", text)


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and everything it was raised from or during, outermost first."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 20:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _summary(exc: BaseException) -> str:
    """One line: the innermost error's type and first line, without torch's boilerplate
    ("This is step 1/3 ... Next steps: ...")."""
    inner = _chain(exc)[-1]
    lines = [line.strip() for line in _plain(str(inner)).splitlines() if line.strip()]
    first = lines[0] if lines else ""
    match = re.search(r"<class '([\w.]+)'>: (.+)", _plain(str(exc)))
    if match and inner is exc:
        name, first = match.group(1).rpartition(".")[2], match.group(2).strip()
        return f"{name}: {first}"[:300]
    return f"{type(inner).__name__}: {first}"[:300]


def _user_frame(exc: BaseException):
    """The deepest frame of the user's code in the tracebacks (not torch, onnxport or
    the standard library), as a traceback.FrameSummary."""
    import traceback

    internal = _internal_dirs()
    torch_dir = _package_dir("torch")
    found = None
    for error in reversed(_chain(exc)):  # innermost first
        inside_torch = False  # only code torch called counts: the model, not the caller
        for frame in traceback.extract_tb(error.__traceback__):
            if frame.filename.startswith(torch_dir):
                inside_torch = True
            elif inside_torch and not frame.filename.startswith((*internal, "<")):
                found = frame
        if found is not None:
            return found
    return None


def _where(exc: BaseException) -> str:
    """`file.py:LINE in function: `code`` for the line of the user's model that made
    the exporter fail, from what torch reports, else from the tracebacks."""
    text = _plain("\n".join(str(e) for e in _chain(exc)))
    call = re.search(r'The following call raised this error:\s*\n\s*File "([^"]+)", line '
                     r'(\d+), in (\w+)\s*\n\s*(.+)', text)
    if call:
        path, line, function, code = call.groups()
        return f"{Path(path).name}:{line} in {function}: `{code.strip()}`"
    node = _fx_node(exc)
    trace = (node.meta.get("stack_trace") or "") if node is not None else ""
    frames = re.findall(r'File "([^"]+)", line (\d+), in (\w+)\n\s*(.+)', trace)
    internal = _internal_dirs()
    mine = [f for f in frames if not f[0].startswith(internal)]
    if mine:
        path, line, function, code = mine[-1]  # the model's own line
        inner = frames[-1][3].strip()
        via = f" (via `{inner}`)" if inner != code.strip() else ""
        return f"{Path(path).name}:{line} in {function}: `{code.strip()}`{via}"
    frame = _user_frame(exc)
    if frame is not None:
        return f"{Path(frame.filename).name}:{frame.lineno} in {frame.name}: " \
               f"`{(frame.line or '').strip()}`"
    return ""


def _internal_dirs() -> tuple[str, ...]:
    """Where torch, the exporters, onnxport and the standard library live: frames there
    are not the user's model."""
    import sysconfig

    return (*(_package_dir(name) for name in _EXPORTER_PACKAGES), _package_dir("onnxport"),
            sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"])


def _fx_node(exc: BaseException):
    """The FX node the dynamo exporter was translating when it failed (a local of its
    translation loop), for the op it came from and the user's stack trace."""
    for error in _chain(exc):
        tb = error.__traceback__
        while tb is not None:
            value = tb.tb_frame.f_locals.get("node")
            if isinstance(value, torch.fx.Node):
                return value
            tb = tb.tb_next
    return None


def _unsupported_operator(text: str, exc: BaseException
                          ) -> tuple[str, int | None, int | None] | None:
    """(operator, opset asked for, opset that added it) for an unsupported operator."""
    torchscript = re.search(r"operator '([\w:.]+)' to ONNX opset version (\d+)", text)
    if torchscript:
        added = re.search(r"added in version (\d+)", text)
        return (torchscript.group(1), int(torchscript.group(2)),
                int(added.group(1)) if added else None)
    symbolic = re.search(r"Unsupported: ONNX export of operator ([\w:.]+)", text)
    if symbolic:
        return f"aten::{symbolic.group(1)}".replace("aten::aten::", "aten::"), None, None
    dispatch = re.search(r"No ONNX function found for <OpOverload\(op='([\w.]+)'", text)
    if dispatch:
        return dispatch.group(1).replace(".", "::", 1), None, None
    return None


def _candidates(op: str) -> list[str]:
    """aten::rrelu_with_noise_functional -> itself, aten::rrelu_with_noise, aten::rrelu:
    the names the other exporter may know the same op by (a functional or `_with_X`
    variant is the same op)."""
    namespace, _, name = op.partition("::")
    namespace = "aten" if namespace in ("aten", "prims") else namespace
    found = [name]
    if name.endswith("_functional"):
        found.append(name.removesuffix("_functional"))
    base = re.sub(r"_with_\w+$", "", found[-1])
    if base != found[-1]:
        found.append(base)
    return [f"{namespace}::{n}" for n in found if n]


def _other_exporter_support(op: str, exporter: str, exc: BaseException) -> str:
    """What to do when the other exporter has the op: "--exporter X [--opset N]"."""
    names = _candidates(op)
    node = _fx_node(exc)
    original = node.meta.get("original_aten") if node is not None else None
    if original is not None:
        names = _candidates(str(original).rpartition(".")[0].replace(".", "::", 1)) + names
    try:
        if exporter == "dynamo":
            found = _torchscript_min_opset(names)
            if found is not None:
                name, low = found
                return (f"the TorchScript exporter has {name} (from opset {low}): convert "
                        "with --exporter torchscript")
        else:
            if _dynamo_has(names):
                return "the dynamo exporter has it: convert with --exporter dynamo"
    except Exception:  # the registries are torch internals: never fail the message
        return ""
    return ""


def _torchscript_min_opset(names: list[str]) -> tuple[str, int] | None:
    import importlib

    from torch.onnx._internal.torchscript_exporter import registration

    for version in range(7, 21):
        try:
            importlib.import_module(
                f"torch.onnx._internal.torchscript_exporter.symbolic_opset{version}")
        except ImportError:
            pass
    for name in dict.fromkeys(names):
        group = registration.registry.get_function_group(name)
        if group is not None:
            return name, group.get_min_supported()
    return None


def _dynamo_has(names: list[str]) -> bool:
    from torch.onnx._internal.exporter import _registration

    registry = _registration.ONNXRegistry.from_torchlib()
    for name in dict.fromkeys(names):
        namespace, _, op = name.partition("::")
        packet = getattr(getattr(torch.ops, namespace, None), op, None)
        overload = getattr(packet, "default", None) if packet is not None else None
        if overload is not None and registry.is_registered(overload):
            return True
    return False


def _fixed_axes(text: str, axes: dict[str, dict[int, str]]) -> list[str]:
    """The declared axes (`input:axis=name`) whose name torch's error mentions."""
    found = []
    for name, per_input in axes.items():
        for axis, label in per_input.items():
            if re.search(rf"\b{re.escape(label)}\b", text):
                found.append(f"{name}:{axis}={label}")
    return found


def _lost_batch(text: str) -> bool:
    """Errors of a model that fixes its batch size, traced with a dynamic batch."""
    return bool(re.search(
        r"Constraints violated|specializ|not dynamic|not in VR\[|"
        r"Expected hidden\[\d\] size|size \([^)]*\bs\d+\b[^)]*\)|\bs\d+\b.*\bgot \[",
        text, re.IGNORECASE))


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
