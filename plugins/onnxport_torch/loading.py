"""Loading a PyTorch source safely and settling its input and output names.

Files are read with `torch.load(weights_only=True)`, which refuses to run code; a
pickled whole model needs the user's explicit `--trust-code`.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from onnxport.errors import BadInput
from onnxport.flow.inputs import checked_dynamic_axes
from onnxport.records import InputSpec, LoadedModel, LoadRequest

from .binding import KEYWORD, POSITIONAL, Signature, call, signature_of
from .outputs import flatten_outputs, output_keys

_STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights")


def load(request: LoadRequest) -> LoadedModel:
    source = request.source
    if source.kind == "path":
        path = source.path
        if path.suffix.lower() == ".pt2":
            model = _load_exported_program(path)
        else:
            model = _load_pickled_model(path, request.trust_code)
    else:
        model = source.value
    example = source.example_inputs
    if isinstance(model, torch.export.ExportedProgram):
        if request.dynamic_axes:
            raise BadInput(
                "a .pt2 ExportedProgram keeps the shapes it was exported with, so the "
                "dynamic axes " + _axes_text(request.dynamic_axes) + " cannot be added",
                "export the program with those axes in dynamic_shapes, or convert the "
                "nn.Module (a factory) with --dynamic")
        if source.weights is not None:
            raise BadInput("--weights does not apply to a .pt2 ExportedProgram, which "
                           "carries its own weights")
        if example is None and not request.inputs:
            args, kwargs = model.example_inputs or ((), {})
            example = {**dict(zip(_program_input_names(model), args)), **kwargs}
        callable_model = model.module()
        # the program's flat inputs, always passed by position
        signature = Signature(tuple(_program_input_names(model)))
        by_name = False
        class_name = "ExportedProgram"
    else:
        if source.weights is not None:
            apply_weights(model, source.weights)
        model.eval()
        callable_model = model
        signature = signature_of(model)
        by_name = True
        class_name = type(model).__name__
    names, tensors, binding = example_tensors(example, request.inputs, signature,
                                              class_name, by_name=by_name)
    outputs = _dry_run(callable_model, tensors, names, class_name, binding)
    output_names = _output_names(outputs, request.output_names)
    input_names = _renamed(names, request.input_names)
    axes = checked_dynamic_axes(request.dynamic_axes,
                                {n: tuple(t.shape) for n, t in zip(input_names, tensors)},
                                request.dynamic_batch)
    if request.dynamic_batch:
        tensors = _batched_for_export(tensors, input_names, request.example_batch)
    tensors = _sized_for_export(tensors, input_names, axes)
    return LoadedModel(
        backend="torch",
        framework="torch",
        framework_version=torch.__version__,
        model=model,
        input_names=input_names,
        output_names=output_names,
        example_inputs={n: t.detach().cpu().numpy() for n, t in zip(input_names, tensors)},
        description=class_name,
        details={"parameters": sum(p.numel() for p in model.parameters()),
                 "forward_arguments": names, "binding": binding},
        dynamic_axes=axes,
    )


# ----------------------------------------------------------------------------- files


def _load_exported_program(path: Path):
    try:
        return torch.export.load(str(path))
    except Exception as exc:
        raise BadInput(f"{path} is not a readable ExportedProgram (.pt2): "
                       f"{type(exc).__name__}: {_first_line(exc)}",
                       "save it with torch.export.save(program, path)") from exc


def _load_pickled_model(path: Path, trust_code: bool):
    obj = _safe_torch_load(path, what="model file", trust_code=trust_code)
    if isinstance(obj, torch.nn.Module):
        return obj
    if _state_dict_in(obj) is not None:
        raise BadInput(
            f"{path} holds a state_dict (weights only), not a model",
            f"give a factory that builds the model and this file as weights: "
            f"onnxport convert package.module:build --weights {path}")
    raise BadInput(f"{path} holds a {type(obj).__name__}, not a PyTorch model")


def _safe_torch_load(path: Path, *, what: str, trust_code: bool = False) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" not in str(exc).lower():
            raise _unreadable(path, what, exc) from exc
        if not trust_code:
            raise BadInput(
                f"{path} holds a pickled Python object, and loading it would execute code "
                "from the file",
                "save a state_dict and convert a factory with --weights; if you made the "
                "file yourself or fully trust it, pass --trust-code") from exc
    except Exception as exc:
        raise _unreadable(path, what, exc) from exc
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except ModuleNotFoundError as exc:
        raise BadInput(f"{path} pickles a model whose code is in module {exc.name!r}, "
                       "which cannot be imported here",
                       "run from the directory that holds that module or add it to "
                       "PYTHONPATH") from exc
    except Exception as exc:
        raise _unreadable(path, what, exc) from exc


def _unreadable(path: Path, what: str, exc: Exception) -> BadInput:
    return BadInput(f"{path} is not a readable PyTorch {what} (truncated or corrupt?): "
                    f"{type(exc).__name__}: {_first_line(exc)}",
                    "save it again with torch.save")


# ----------------------------------------------------------------------------- weights


def apply_weights(model: torch.nn.Module, path: Path) -> None:
    """Load a state_dict, or a checkpoint dict holding one, strictly into `model`."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"--weights {path} does not exist")
    obj = _safe_torch_load(path, what="checkpoint")
    state = _state_dict_in(obj)
    if state is None:
        keys = ", ".join(list(obj)[:8]) if isinstance(obj, dict) else type(obj).__name__
        raise BadInput(f"--weights {path} holds no state_dict (found: {keys})",
                       "save model.state_dict(), or a dict with it under 'state_dict'")
    if state and all(k.startswith("module.") for k in state):  # saved from DataParallel
        state = {k.removeprefix("module."): v for k, v in state.items()}
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [f"{k} is {list(state[k].shape)} in the file, {list(v.shape)} in the model"
                   for k, v in expected.items()
                   if k in state and tuple(state[k].shape) != tuple(v.shape)]
    problems = []
    if missing:
        problems.append("missing " + _few(missing))
    if unexpected:
        problems.append("unexpected " + _few(unexpected))
    if wrong_shape:
        problems.append("shape mismatch: " + _few(wrong_shape))
    if problems:
        raise BadInput(f"--weights {path} does not fit {type(model).__name__}: "
                       + "; ".join(problems),
                       "check that the factory builds the same architecture the "
                       "checkpoint was saved from")
    model.load_state_dict(state, strict=True)


def _state_dict_in(obj: Any) -> dict[str, torch.Tensor] | None:
    if isinstance(obj, dict) and obj and all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        return obj
    if isinstance(obj, dict):
        for key in _STATE_DICT_KEYS:
            if key in obj:
                found = _state_dict_in(obj[key])
                if found is not None:
                    return found
    return None


# ----------------------------------------------------------------------------- inputs


def forward_parameters(model: torch.nn.Module) -> tuple[list[str], bool]:
    """forward()'s argument names, and whether it also takes *args or **kwargs."""
    signature = signature_of(model)
    return list(signature.names), signature.var_positional or signature.var_keyword


def example_tensors(example: Any, specs: tuple[InputSpec, ...], signature: Signature,
                    class_name: str, *, by_name: bool = True
                    ) -> tuple[list[str], list[torch.Tensor], str]:
    """Example inputs as (names, tensors, binding).

    A tuple takes forward()'s names by position and is passed by position. A dict (or
    `--input` specs) is passed by name (binding "keyword", unless `by_name` is False):
    its keys must be forward() arguments, or anything if forward() takes **kwargs. The
    inputs are in forward()'s order, or in the dict's order when forward() takes
    **kwargs. `--input` shapes replace the example's.
    """
    parameters = list(signature.names)
    described = signature.describe(class_name)
    by_name_inputs: dict[str, Any] = {}
    binding = KEYWORD if by_name else POSITIONAL
    if example is None:
        if not specs:
            raise BadInput(
                "no example inputs to trace the model with",
                "return (model, example_inputs) from the factory, or pass "
                "--input NAME:SHAPE for each argument of " + described)
    elif isinstance(example, dict):
        by_name_inputs = {str(k): v for k, v in example.items()}
    else:
        values = list(example) if isinstance(example, (tuple, list)) else [example]
        if not signature.var_positional and len(values) > len(parameters):
            raise BadInput(f"{len(values)} example inputs given, but {described} takes "
                           f"{len(parameters)}")
        names = parameters[:len(values)] + [f"input_{i}" for i in
                                            range(len(parameters), len(values))]
        by_name_inputs = dict(zip(names, values))
        binding = POSITIONAL
    for spec in specs:
        if binding == POSITIONAL and by_name and spec.name not in by_name_inputs:
            binding = KEYWORD  # an argument the tuple did not give: pass them all by name
        by_name_inputs[spec.name] = _tensor_for_spec(spec)
    open_ended = signature.var_keyword if binding == KEYWORD else signature.var_positional
    unknown = [n for n in by_name_inputs if n not in parameters]
    if unknown and not open_ended:
        raise BadInput(f"input {unknown[0]!r} is not an argument of {described}",
                       f"name the inputs after forward()'s arguments: "
                       f"{', '.join(parameters)}; rename them with --input-names")
    if unknown or (binding == KEYWORD and signature.var_keyword):
        names = list(by_name_inputs)  # forward(**kwargs): the order the user gave
    else:
        names = [n for n in parameters if n in by_name_inputs]
    tensors = []
    for name in names:
        value = by_name_inputs[name]
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(value)
        if not isinstance(value, torch.Tensor):
            raise BadInput(f"example input {name!r} is a {type(value).__name__}; "
                           "onnxport exports tensor inputs only")
        tensors.append(value)
    return names, tensors, binding


def _tensor_for_spec(spec: InputSpec) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    dtype = getattr(torch, spec.dtype)
    if dtype.is_floating_point:
        return torch.rand(spec.shape, generator=generator).to(dtype) * 2 - 1
    return torch.randint(0, 10, spec.shape, generator=generator).to(dtype)


def _dry_run(model, tensors: list[torch.Tensor], names: list[str], class_name: str,
             binding: str = POSITIONAL):
    """Run the model once: a spec that does not fit fails here, with a clear message."""
    try:
        with torch.inference_mode():
            return call(model, tensors, names, binding)
    except Exception as exc:
        shapes = ", ".join(f"{n} {str(t.dtype).removeprefix('torch.')}{list(t.shape)}"
                           for n, t in zip(names, tensors))
        raise BadInput(f"{class_name} rejects the example inputs ({shapes}): "
                       f"{type(exc).__name__}: {_first_line(exc)}",
                       "check the --input shapes (rank, sizes, dtype) against the model") \
            from exc


def _output_names(outputs: Any, requested: tuple[str, ...] | None) -> list[str]:
    count = len(flatten_outputs(outputs))
    if requested is not None:
        if len(requested) != count:
            raise BadInput(f"{len(requested)} output names given ({', '.join(requested)}) "
                           f"but the model returns {count} output(s)")
        return list(requested)
    keys = output_keys(outputs)
    if keys is not None:
        return keys
    return ["output"] if count == 1 else [f"output_{i}" for i in range(count)]


def _renamed(names: list[str], renames: tuple[str, ...] | None) -> list[str]:
    if renames is None:
        return names
    if len(renames) != len(names):
        raise BadInput(f"{len(renames)} input names given ({', '.join(renames)}) but the "
                       f"model takes {len(names)} input(s) ({', '.join(names)})")
    return list(renames)


def _batched_for_export(tensors: list[torch.Tensor], names: list[str],
                        batch: int) -> list[torch.Tensor]:
    """torch.export specialises a batch of 1; trace with `batch` rows instead."""
    sizes = {t.shape[0] if t.dim() else None for t in tensors}
    if None in sizes or len(sizes) != 1:
        detail = ", ".join(f"{n} {list(t.shape)}" for n, t in zip(names, tensors))
        raise BadInput(f"a dynamic batch needs every input to share its first axis "
                       f"({detail})", "pass --static-batch to export fixed shapes")
    (current,) = sizes
    if current >= 2:
        return tensors
    return [t.repeat(batch, *([1] * (t.dim() - 1))) for t in tensors]


def _sized_for_export(tensors: list[torch.Tensor], names: list[str],
                      axes: dict[str, dict[int, str]]) -> list[torch.Tensor]:
    """torch.export specialises a size of 1: a dynamic axis the example has once is
    traced twice (the example repeated along it)."""
    sized = []
    for name, tensor in zip(names, tensors):
        for axis in axes.get(name, {}):
            if tensor.shape[axis] < 2:
                tensor = torch.cat([tensor, tensor], dim=axis)
        sized.append(tensor)
    return sized


def _axes_text(axes) -> str:
    return ", ".join(f"{name}:{axis}={label}" for name, per_input in axes.items()
                     for axis, label in per_input.items())


def _program_input_names(program) -> list[str]:
    from torch.export.graph_signature import InputKind

    return [spec.arg.name for spec in program.graph_signature.input_specs
            if spec.kind == InputKind.USER_INPUT]


def _few(items: list[str], limit: int = 4) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


def _first_line(exc: BaseException, limit: int = 160) -> str:
    """The first sentence of an error, short enough for one line."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    sentence, dot, _ = text.partition(". ")
    text = sentence + dot.strip() if dot else text
    return text if len(text) <= limit else text[:limit - 3] + "..."
