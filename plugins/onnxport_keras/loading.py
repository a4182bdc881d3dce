"""Loading a Keras source safely and settling its input and output names.

.keras files are read with `keras.saving.load_model(compile=False, safe_mode=True)`:
the loss, metrics and optimizer are not needed to run the model, so a custom loss never
blocks a conversion, and a Lambda layer's Python code is not run unless the user passes
`--trust-code`. A SavedModel directory is read with `tf.saved_model.load` (a graph, no
Python code) and its `serving_default` signature is the model.

Names are the model's own: for a Functional or Sequential model its Input names (or the
keys of a dict of inputs) and its output layer names (or the keys of a dict it returns);
for a SavedModel its signature's keys; for a subclassed model the keys of the example
dict, else `call()`'s argument name (one input) or input_0, input_1, ... A subclassed
model's example dict whose keys all name `call()` arguments (`{"x": array}` for
`call(self, x)`) is passed by name, `model(x=array)`; any other dict is passed whole,
as the model's one input.
"""

from __future__ import annotations

import inspect
import re
import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from onnxport.errors import BadInput
from onnxport.flow.inputs import checked_dynamic_axes
from onnxport.records import InputSpec, LoadedModel, LoadRequest

from .calling import (ARGUMENTS, KERAS, SAVED_MODEL, call_flat, call_keras,
                      flatten_result, result_structure)
from .customobjects import as_references, resolve_custom_objects
from .detect import LEGACY_SUFFIXES, is_keras_model
from .tfenv import import_keras, import_tensorflow

SIGNATURE = "serving_default"
_UNSTABLE_NAME = re.compile(r"^keras_tensor(_\d+)?$")  # Keras' global tensor counter


def load(request: LoadRequest, backend: str = "keras") -> LoadedModel:
    keras = import_keras(f"the {backend} backend")
    tf = import_tensorflow(f"the {backend} backend")
    source = request.source
    given = request.options.get("custom_objects")
    custom = resolve_custom_objects(given)
    if isinstance(given, Mapping) and isinstance(request.options, dict):
        # Workaround until the core records objects by reference: the manifest writes
        # the request's custom_objects as JSON, which a dict of classes cannot be.
        request.options["custom_objects"] = as_references(given)
    if source.kind == "path":
        path = source.path
        if path.is_dir():
            return _load_saved_model(path, request, backend)
        if path.suffix.lower() in LEGACY_SUFFIXES:
            raise BadInput(f"{path} is a legacy HDF5 Keras file, which onnxport does not "
                           "read", "load it in Keras and save it as .keras: "
                           "model.save('model.keras')")
        model = load_keras_file(path, custom, request.trust_code)
    else:
        model = source.value
        if not is_keras_model(model):
            raise BadInput(f"{source.origin} is a {type(model).__name__}, not a Keras 3 "
                           "model")
    if source.weights is not None:
        _load_weights(model, Path(source.weights))
    plan = _input_plan(model, source.example_inputs, request.inputs)
    example = _example_arrays(plan, request)
    plan["shapes"] = [list(a.shape) if s is None else s
                      for s, a in zip(plan["shapes"], example)]
    result = _dry_run(model, plan, example)
    structure, keys = result_structure(result)
    flat = flatten_result(result, structure, keys)
    output_names = _output_names(model, structure, keys, len(flat), request.output_names)
    input_names = _renamed(plan["names"], request.input_names)
    axes = _dynamic_axes(request, backend, input_names, example, None)
    return LoadedModel(
        backend=backend,
        framework="keras",
        framework_version=keras.__version__,
        model=model,
        input_names=input_names,
        output_names=output_names,
        example_inputs=dict(zip(input_names, example)),
        description=f"{type(model).__name__} '{model.name}'",
        details={
            "source_kind": KERAS,
            "input_structure": plan["structure"],
            "input_keys": plan["keys"],
            "input_shapes": plan["shapes"],
            "output_structure": structure,
            "output_keys": keys,
            "tensorflow": tf.__version__,
            "parameters": int(model.count_params()),
            "safe_mode": not request.trust_code,
            "custom_objects": sorted(custom),
        },
        dynamic_axes=axes,
    )


def _dynamic_axes(request: LoadRequest, backend: str, names: list[str],
                  example: list[np.ndarray], declared: list | None
                  ) -> dict[str, dict[int, str]]:
    """The user's dynamic axes, checked against the inputs. The keras backend traces them
    as None in the input signature; a SavedModel only where its signature leaves the axis
    open; the tflite backend, whose converter fixes every shape, refuses them."""
    if not request.dynamic_axes:
        return {}
    axes = checked_dynamic_axes(request.dynamic_axes,
                                {n: tuple(a.shape) for n, a in zip(names, example)},
                                request.dynamic_batch)
    listed = ", ".join(f"{n}:{a}={label}" for n, p in axes.items()
                       for a, label in p.items())
    if backend != "keras":
        raise BadInput(f"the {backend} backend cannot keep the dynamic axes {listed}: it "
                       "exports fixed shapes", "convert without --dynamic, or with the "
                       "keras backend to ONNX")
    for index, name in enumerate(names):
        shape = declared[index] if declared and index < len(declared) else None
        fixed = [f"{name}:{a}={label} (fixed at {shape[a]})"
                 for a, label in axes.get(name, {}).items()
                 if shape is not None and a < len(shape) and shape[a] is not None]
        if fixed:
            raise BadInput("the SavedModel's signature fixes the size of the dynamic axes "
                           + ", ".join(fixed),
                           "export it with None on those axes, or leave them out of "
                           "--dynamic")
    return axes


# ----------------------------------------------------------------------------- files


def load_keras_file(path: Path, custom_objects: dict[str, Any], trust_code: bool):
    keras = import_keras()
    if not zipfile.is_zipfile(path):
        raise BadInput(f"{path} is not a Keras .keras file: it is not a zip archive "
                       "(truncated or corrupt?)",
                       "save the model again with model.save('model.keras')")
    with zipfile.ZipFile(path) as archive:
        if "config.json" not in archive.namelist():
            raise BadInput(f"{path} is a zip archive but not a Keras .keras file (it has "
                           "no config.json)",
                           "save the model with Keras 3: model.save('model.keras')")
    try:
        return keras.saving.load_model(str(path), custom_objects=custom_objects or None,
                                       compile=False, safe_mode=not trust_code)
    except Exception as exc:
        raise _load_error(path, exc, keras.__version__) from exc


def _load_error(path: Path, exc: Exception, version: str) -> BadInput:
    text = _full_text(exc)
    missing = re.search(r"Could not locate (class|function) '([^']+)'", text)
    if missing:
        kind, name = missing.groups()
        short = name.rpartition(">")[2]
        return BadInput(
            f"{path} uses the custom {kind} {name!r}, which was not given",
            f"pass --custom-object MODULE:{short} or path/to/file.py:{short} "
            f"(custom_objects= in Python) naming where it is defined")
    if "safe_mode" in text and ("Lambda" in text or "arbitrary code" in text):
        return BadInput(
            f"{path} has a Lambda layer whose Python code would run on loading, which "
            "Keras safe mode refuses",
            "if you made the file yourself or fully trust it, pass --trust-code (it "
            "turns safe mode off and runs that code)")
    if isinstance(exc, (zipfile.BadZipFile, EOFError, OSError)) or "zip" in text.lower():
        return BadInput(f"{path} is not a readable .keras archive (truncated or corrupt?): "
                        f"{type(exc).__name__}: {_first_line(exc)}",
                        "save the model again with model.save('model.keras')")
    return BadInput(f"Keras {version} could not load {path}: {type(exc).__name__}: "
                    f"{_first_line(exc)}",
                    "check that it was saved by Keras 3 with model.save('model.keras'); "
                    "run with --debug for the traceback")


def _load_weights(model, path: Path) -> None:
    if not path.is_file():
        raise BadInput(f"--weights {path} does not exist")
    try:
        model.load_weights(str(path))
    except Exception as exc:
        raise BadInput(f"--weights {path} does not fit {type(model).__name__} "
                       f"'{model.name}': {type(exc).__name__}: {_first_line(exc)}",
                       "save them with model.save_weights('model.weights.h5') from the "
                       "same architecture") from exc


# ----------------------------------------------------------------------------- SavedModel


def _load_saved_model(path: Path, request: LoadRequest, backend: str) -> LoadedModel:
    tf = import_tensorflow(f"the {backend} backend")
    if request.source.weights is not None:
        raise BadInput("--weights does not apply to a SavedModel directory, which "
                       "carries its own weights")
    try:
        root = tf.saved_model.load(str(path))
    except Exception as exc:
        raise BadInput(f"{path} is not a readable SavedModel: {type(exc).__name__}: "
                       f"{_first_line(exc)}",
                       "export the Keras model with model.export(path)") from exc
    signatures = dict(getattr(root, "signatures", {}) or {})
    if SIGNATURE not in signatures:
        has = (f"it has {', '.join(sorted(signatures))}" if signatures
               else "it has no signatures")
        raise BadInput(f"{path} is a SavedModel without a '{SIGNATURE}' signature ({has})",
                       "export the Keras model with model.export(path), which writes one")
    signature = signatures[SIGNATURE]
    _, kwargs = signature.structured_input_signature
    specs = dict(kwargs)
    keys = sorted(specs, key=_natural)  # keyword arguments: no order but the names'
    shapes = [[None if d is None else int(d) for d in specs[k].shape.as_list()]
              for k in keys]
    plan = {"structure": "dict", "keys": keys, "names": keys, "shapes": shapes,
            "dtypes": [specs[k].dtype.name for k in keys], "example": None}
    example = _example_arrays(plan, request)
    details = {"source_kind": SAVED_MODEL, "signature": SIGNATURE, "input_keys": keys,
               "input_shapes": shapes,
               "output_keys": sorted(signature.structured_outputs, key=_natural)}
    probe = LoadedModel(backend, "tensorflow", tf.__version__, root, keys,
                        details["output_keys"], {}, "", details)
    try:
        outputs = call_flat(probe, [tf.constant(a) for a in example])
    except Exception as exc:
        raise _rejects(f"the {SIGNATURE} signature of {path}", keys, example, exc) from exc
    output_names = _output_names(None, "dict", details["output_keys"], len(outputs),
                                 request.output_names)
    input_names = _renamed(keys, request.input_names)
    axes = _dynamic_axes(request, backend, input_names, example, shapes)
    return LoadedModel(
        backend=backend, framework="tensorflow", framework_version=tf.__version__,
        model=root, input_names=input_names, output_names=output_names,
        example_inputs=dict(zip(input_names, example)),
        description=f"SavedModel signature {SIGNATURE}", details=details,
        dynamic_axes=axes)


# ----------------------------------------------------------------------------- inputs


def _input_plan(model, example: Any, specs: tuple[InputSpec, ...]) -> dict[str, Any]:
    """Input names, the structure `model(...)` takes, declared shapes and dtypes, and the
    example arrays the user gave (by name), before `--input` specs are applied."""
    declared = _declared_inputs(model)
    by_name: dict[str, Any] = {}
    if declared is not None:
        structure, keys, tensors = declared
        names = [_stable(k, i, len(keys)) for i, k in enumerate(keys)]
        shapes = [[None if d is None else int(d) for d in t.shape] for t in tensors]
        dtypes = [str(t.dtype) for t in tensors]
        if example is not None:
            by_name = _example_by_name(example, names, keys, f"{type(model).__name__} "
                                       f"'{model.name}'")
    else:
        if example is None and not specs:
            raise BadInput(
                f"{type(model).__name__} '{model.name}' declares no inputs, so there is "
                "nothing to trace it with",
                "return (model, example_inputs) from the factory, or pass --input "
                "NAME:SHAPE for each input")
        if example is None:
            keys = names = [s.name for s in specs]
            arguments = _call_arguments(model)
            structure = ("tensor" if len(specs) == 1 else
                         ARGUMENTS if all(k in arguments for k in keys) else "dict")
        elif isinstance(example, dict):
            keys = [str(k) for k in example]
            arguments = _call_arguments(model)
            # keys that all name call()'s arguments are passed by name, model(x=...);
            # other keys make one dict, model({"a": ..., "b": ...})
            structure = ARGUMENTS if keys and all(k in arguments for k in keys) \
                else "dict"
            names = keys
            by_name = dict(zip(keys, example.values()))
        elif isinstance(example, (list, tuple)):
            structure = "list"
            keys = names = [f"input_{i}" for i in range(len(example))]
            by_name = dict(zip(names, example))
        else:
            structure = "tensor"
            keys = names = [_call_argument(model)]
            by_name = {names[0]: example}
        shapes = [None] * len(names)
        dtypes = [None] * len(names)
    what = f"{type(model).__name__} '{model.name}'"
    for spec in specs:
        if spec.name not in names:
            raise BadInput(f"input {spec.name!r} is not an input of {what}",
                           f"its inputs are: {', '.join(names)}")
    arrays = []
    for name, value in ((n, by_name.get(n)) for n in names):
        arrays.append(None if value is None else _as_array(name, value))
    return {"structure": structure, "keys": keys, "names": names, "shapes": shapes,
            "dtypes": dtypes, "example": arrays}


def _declared_inputs(model):
    """(structure, keys, KerasTensors) of a Functional or built Sequential model, or None
    for a model that declares no inputs (subclassed, or a Sequential without Input)."""
    try:
        import keras

        functional = model
        if isinstance(model, keras.Sequential):
            functional = getattr(model, "_functional", None)
            if functional is None:
                return None
        tensors = functional.inputs
        struct = functional.input
    except (AttributeError, ValueError, TypeError):
        return None
    if not tensors:
        return None
    if isinstance(struct, dict):
        return "dict", [str(k) for k in struct], [struct[k] for k in struct]
    if isinstance(struct, (list, tuple)):
        flat = list(struct)
        return "list", [t.name for t in flat], flat
    return "tensor", [struct.name], [struct]


def _example_by_name(example: Any, names: list[str], keys: list[str],
                     what: str) -> dict[str, Any]:
    if isinstance(example, dict):
        lookup = {**dict(zip(keys, names)), **{n: n for n in names}}
        unknown = [k for k in example if k not in lookup]
        if unknown:
            raise BadInput(f"example input {unknown[0]!r} is not an input of {what}",
                           f"its inputs are: {', '.join(names)}")
        return {lookup[k]: v for k, v in example.items()}
    values = list(example) if isinstance(example, (list, tuple)) else [example]
    if len(values) != len(names):
        raise BadInput(f"{len(values)} example input(s) given, but {what} takes "
                       f"{len(names)} ({', '.join(names)})")
    return dict(zip(names, values))


def _example_arrays(plan: dict[str, Any], request: LoadRequest) -> list[np.ndarray]:
    """One array per input: the user's, else made from the declared shape and dtype."""
    arrays = plan.get("example") or [None] * len(plan["names"])
    for spec in request.inputs:
        if spec.name not in plan["names"]:
            raise BadInput(f"input {spec.name!r} is not an input of the model",
                           f"its inputs are: {', '.join(plan['names'])}")
        arrays[plan["names"].index(spec.name)] = _array_for_spec(spec)
        plan["shapes"][plan["names"].index(spec.name)] = list(spec.shape)
    rng = np.random.default_rng(0)
    made = []
    for name, array, shape, dtype in zip(plan["names"], arrays, plan["shapes"],
                                         plan["dtypes"]):
        if array is None:
            if shape is None:
                raise BadInput(f"no example for input {name!r}",
                               f"pass --input {name}:SHAPE")
            unknown = [i for i, d in enumerate(shape) if d is None and i > 0]
            if unknown:
                raise BadInput(f"input {name!r} has no fixed size on axis {unknown[0]} "
                               f"(declared {_shape_text(shape)}), so onnxport cannot make "
                               "an example for it",
                               f"pass --input {name}:SHAPE, e.g. --input {name}:"
                               + "x".join(str(d or 8) for d in [request.example_batch,
                                                                *shape[1:]]))
            full = [request.example_batch, *shape[1:]] if shape else []
            array = _random(rng, full, dtype or "float32")
        elif dtype is not None and array.dtype != np.dtype(dtype):
            array = array.astype(dtype)  # the dtype the model declares for this input
        made.append(array)
    if request.dynamic_batch:
        made = _batched(made, plan["names"], request.example_batch)
    return made


def _batched(arrays: list[np.ndarray], names: list[str], batch: int) -> list[np.ndarray]:
    sizes = {a.shape[0] if a.ndim else None for a in arrays}
    if None in sizes or len(sizes) != 1:
        detail = ", ".join(f"{n} {list(a.shape)}" for n, a in zip(names, arrays))
        raise BadInput(f"a dynamic batch needs every input to share its first axis "
                       f"({detail})", "pass --static-batch to export fixed shapes")
    (current,) = sizes
    if current >= 2:
        return arrays
    return [np.repeat(a, batch, axis=0) for a in arrays]


def _dry_run(model, plan: dict[str, Any], arrays: list[np.ndarray]):
    """Run the model once: inputs that do not fit fail here, with a clear message."""
    try:
        return call_keras(model, plan["structure"], plan["keys"], arrays)
    except Exception as exc:
        raise _rejects(f"{type(model).__name__} '{model.name}'", plan["names"], arrays,
                       exc) from exc


def _rejects(what: str, names: list[str], arrays: list[np.ndarray],
             exc: Exception) -> BadInput:
    shapes = ", ".join(f"{n} {a.dtype}{list(a.shape)}" for n, a in zip(names, arrays))
    return BadInput(f"{what} rejects the example inputs ({shapes}): "
                    f"{type(exc).__name__}: {_first_line(exc)}",
                    "check the --input shapes (rank, sizes, dtype) against the model")


# ----------------------------------------------------------------------------- outputs


def _output_names(model, structure: str, keys: list[str] | None, count: int,
                  requested: tuple[str, ...] | None) -> list[str]:
    if requested is not None:
        if len(requested) != count:
            raise BadInput(f"{len(requested)} output names given ({', '.join(requested)}) "
                           f"but the model returns {count} output(s)")
        return list(requested)
    if structure == "dict" and keys:
        return list(keys)
    names = _output_layer_names(model) if model is not None else None
    if names is not None and len(names) == count:
        return _unique(names)
    return ["output"] if count == 1 else [f"output_{i}" for i in range(count)]


def _output_layer_names(model) -> list[str] | None:
    """The layers that produce a Functional (or built Sequential) model's outputs."""
    try:
        import keras

        functional = model._functional if isinstance(model, keras.Sequential) else model
        if functional is None:
            return None
        names = getattr(functional, "output_names", None)
        if names:
            return [str(n) for n in names]
        return [t._keras_history[0].name for t in functional.outputs]
    except (AttributeError, ValueError, TypeError, IndexError):
        return None


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    result = []
    for name in names:
        if name in seen:
            seen[name] += 1
            name = f"{name}_{seen[name]}"
        seen.setdefault(name, 0)
        result.append(name)
    return result


# ----------------------------------------------------------------------------- helpers


def _renamed(names: list[str], renames: tuple[str, ...] | None) -> list[str]:
    if renames is None:
        return list(names)
    if len(renames) != len(names):
        raise BadInput(f"{len(renames)} input names given ({', '.join(renames)}) but the "
                       f"model takes {len(names)} input(s) ({', '.join(names)})")
    return list(renames)


def _stable(name: str, index: int, count: int) -> str:
    """Keras numbers anonymous tensors with a process-wide counter (keras_tensor_12):
    such a name would change from run to run, so it becomes input / input_N."""
    if _UNSTABLE_NAME.match(name):
        return "input" if count == 1 else f"input_{index}"
    return name


def _call_argument(model) -> str:
    try:
        parameters = [p for p in inspect.signature(model.call).parameters.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        parameters = []
    return parameters[0].name if parameters else "input"


_NOT_INPUTS = ("training", "mask")  # call() arguments Keras itself passes


def _call_arguments(model) -> list[str]:
    """call()'s arguments that can take an input by name (not training or mask)."""
    try:
        parameters = inspect.signature(model.call).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p.name for p in parameters
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            and p.name not in _NOT_INPUTS]


def _as_array(name: str, value: Any) -> np.ndarray:
    if hasattr(value, "numpy") and not isinstance(value, np.ndarray):
        value = value.numpy()
    try:
        array = np.asarray(value)
    except Exception as exc:
        raise BadInput(f"example input {name!r} is a {type(value).__name__}, which is not "
                       "an array") from exc
    if array.dtype == object or array.dtype.kind not in "biuf":
        raise BadInput(f"example input {name!r} has dtype {array.dtype}; onnxport exports "
                       "numeric tensor inputs only")
    if array.dtype == np.float64:
        array = array.astype(np.float32)
    return np.ascontiguousarray(array)


def _array_for_spec(spec: InputSpec) -> np.ndarray:
    return _random(np.random.default_rng(0), list(spec.shape), spec.dtype)


def _random(rng: np.random.Generator, shape: list[int], dtype: str) -> np.ndarray:
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return rng.uniform(-1, 1, shape).astype(dt)
    if dt.kind == "b":
        return rng.integers(0, 2, shape).astype(dt)
    return rng.integers(0, 10, shape).astype(dt)


def _shape_text(shape: list[int | None] | None) -> str:
    return "unknown" if shape is None else "[" + ", ".join(
        "None" if d is None else str(d) for d in shape) + "]"


def _natural(key: str):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", key)]


def _full_text(exc: BaseException) -> str:
    parts, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        parts.append(f"{type(exc).__name__}: {exc}")
        exc = exc.__cause__ or exc.__context__
    return "\n".join(parts)


def _first_line(exc: BaseException, limit: int = 200) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    text = (lines[0] if lines else "").rstrip(": ")
    return text if len(text) <= limit else text[:limit - 3] + "..."
