"""Loading a scikit-learn source safely and settling its one input and its outputs.

A fitted estimator arrives as a Python object (or from a `module:function` factory the
core has already called). Pickle and joblib files run code while they are read, so they
are loaded only with the user's explicit `trust_code` (`--trust-code`). The model runs
once on the example rows here, so an unfitted model or a wrong column count fails now,
with a message, rather than inside skl2onnx.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import sklearn
from sklearn.exceptions import NotFittedError

from onnxport.errors import BadInput
from onnxport.records import InputSpec, LoadedModel, LoadRequest

from .detect import is_sklearn_estimator
from .outputs import compute_outputs, output_plan

DEFAULT_INPUT = "input"
SOURCE_DTYPES = ("float64", "float32")


def load(request: LoadRequest) -> LoadedModel:
    source = request.source
    if source.weights is not None:
        raise BadInput("--weights does not apply to scikit-learn models, which carry "
                       "their fitted parameters themselves", "drop --weights")
    if source.kind == "path":
        model = _load_file(source.path, request.trust_code)
    else:
        model = source.value
    name = describe(model)
    _check_fitted(model, name)
    try:
        plan = output_plan(model)
    except ValueError as exc:
        raise BadInput(f"{name} cannot be converted: {exc}",
                       "convert a classifier, regressor, transformer, clusterer or "
                       "outlier detector (or a Pipeline ending in one)") from exc
    n_features = getattr(model, "n_features_in_", None)
    input_name, X = _example(request, source.example_inputs, n_features, name)
    outputs, source_dtype = _dry_run(model, plan, X, name)
    output_names = _output_names(plan.names, request.output_names, name)
    if input_name in output_names:
        raise BadInput(f"the input and an output would both be named {input_name!r}",
                       "give them distinct names with --input-names / --output-names")
    details: dict[str, Any] = {
        "estimator": f"{type(model).__module__}.{type(model).__qualname__}",
        "kind": plan.kind,
        "n_features": int(X.shape[1]),
        "outputs": dict(zip(output_names, plan.methods)),
        # the sizes of each output past the batch axis: export reshapes ONNX to these
        "output_shapes": [list(o.shape[1:]) for o in outputs],
        "source_dtype": source_dtype,  # what the sklearn runner feeds the model
    }
    if plan.kind == "classifier":
        details["classes"] = [_plain(c) for c in np.asarray(model.classes_).tolist()]
        details["label"] = "index into classes" if plan.label_index else "class"
    if hasattr(model, "steps"):
        details["steps"] = [type(step).__name__ for _, step in model.steps]
    return LoadedModel(
        backend="sklearn",
        framework="scikit-learn",
        framework_version=sklearn.__version__,
        model=model,
        input_names=[input_name],
        output_names=output_names,
        example_inputs={input_name: X},
        description=name,
        details=details,
    )


def describe(model: Any) -> str:
    """`Pipeline(StandardScaler, LogisticRegression)` or the class name."""
    steps = getattr(model, "steps", None)
    if isinstance(steps, list):
        return f"{type(model).__name__}({', '.join(describe(s) for _, s in steps)})"
    return type(model).__name__


# ----------------------------------------------------------------------------- files


def _load_file(path: Path, trust_code: bool) -> Any:
    if not trust_code:
        raise BadInput(
            f"{path} is a pickle, and loading it would execute code from the file",
            "convert a factory package.module:function that returns the fitted model "
            "instead; if you made the file yourself or fully trust it, pass --trust-code "
            "(trust_code=True in Python)")
    import joblib

    try:
        model = joblib.load(path)  # also reads plain pickles
    except ModuleNotFoundError as exc:
        raise BadInput(f"{path} pickles an object whose code is in module {exc.name!r}, "
                       "which cannot be imported here",
                       "install that package, or run from the directory that holds the "
                       "module") from exc
    except Exception as exc:
        raise BadInput(f"{path} is not a readable pickle or joblib file (truncated or "
                       f"corrupt?): {type(exc).__name__}: {_first_line(exc)}",
                       "save the fitted model again with joblib.dump(model, path)") from exc
    if not is_sklearn_estimator(model):
        raise BadInput(f"{path} holds a {type(model).__name__}, not a scikit-learn "
                       "estimator", "save the fitted estimator or Pipeline itself")
    return model


# ----------------------------------------------------------------------------- checks


def _check_fitted(model: Any, name: str) -> None:
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(model)
    except NotFittedError as exc:
        raise _not_fitted(name) from exc
    except TypeError:  # not an estimator check_is_fitted understands: the dry run decides
        pass


def _not_fitted(name: str) -> BadInput:
    return BadInput(f"{name} is not fitted", "fit it first (model.fit(X, y)) and convert "
                    "the fitted model")


def _dry_run(model: Any, plan, X: np.ndarray, name: str) -> tuple[list[np.ndarray], str]:
    """The outputs on the example, and the dtype the runner feeds: float64 if the model
    takes it (the most precise reference), else float32."""
    first = None
    for dtype in SOURCE_DTYPES:
        try:
            return compute_outputs(model, plan, X, dtype), dtype
        except NotFittedError as exc:
            raise _not_fitted(f"{name} (or one of its steps)") from exc
        except Exception as exc:
            first = first or exc
    raise BadInput(f"{name} rejects the example inputs ({list(X.shape)}): "
                   f"{type(first).__name__}: {_first_line(first)}",
                   "give rows shaped like the training data: return (model, X) from "
                   "the factory, or pass --input input:ROWSxFEATURES") from first


# ----------------------------------------------------------------------------- inputs


def _example(request: LoadRequest, example: Any, n_features: int | None,
             name: str) -> tuple[str, np.ndarray]:
    """The input's name and example rows (float32, 2-D); --input replaces the example."""
    key = None
    if isinstance(example, dict):
        if len(example) != 1:
            raise BadInput(f"{len(example)} example inputs given ({', '.join(example)}), "
                           f"but {name} takes one 2-D array")
        (key, example), = example.items()
    elif isinstance(example, (tuple, list)) and len(example) == 1 and \
            np.ndim(example[0]) == 2:
        example = example[0]
    specs = request.inputs
    if len(specs) > 1:
        raise BadInput(f"{len(specs)} --input specs given, but {name} takes one 2-D array")
    if specs:
        key = specs[0].name
        X = _from_spec(specs[0], n_features, name)
    elif example is not None:
        X = _as_rows(example, name)
    elif n_features is not None:
        X = np.random.default_rng(0).uniform(
            -1, 1, (max(request.example_batch, 1), n_features)).astype(np.float32)
    else:
        raise BadInput(f"{name} does not record its number of features (n_features_in_)",
                       "return (model, X) from the factory, or pass --input input:2xN")
    if n_features is not None and X.shape[1] != n_features:
        raise BadInput(f"the example has {X.shape[1]} columns but {name} was fitted on "
                       f"{n_features} features", "give rows shaped like the training data")
    if request.dynamic_batch:
        X = X[:max(request.example_batch, 1)]  # only the shape past the batch matters
    return _input_name(request.input_names, key), np.ascontiguousarray(X)


def _as_rows(example: Any, name: str) -> np.ndarray:
    try:
        X = np.asarray(example, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise BadInput(f"the example inputs of {name} are not numeric "
                       f"({type(example).__name__}): {_first_line(exc)}",
                       "the ONNX model takes one float tensor; encode text or category "
                       "columns inside the Pipeline, or convert from numeric data") from exc
    if X.ndim != 2 or X.shape[0] == 0:
        raise BadInput(f"the example inputs of {name} have shape {list(X.shape)}; a "
                       "scikit-learn model takes 2-D rows x features",
                       "give at least one row, e.g. X[:2], or X.reshape(1, -1) for one "
                       "sample")
    return X


def _from_spec(spec: InputSpec, n_features: int | None, name: str) -> np.ndarray:
    if len(spec.shape) != 2:
        raise BadInput(f"--input {spec.name}:{'x'.join(map(str, spec.shape))} is not 2-D; "
                       f"{name} takes rows x features",
                       f"write it like {spec.name}:2x{n_features or 'FEATURES'}")
    if np.dtype(spec.dtype).kind != "f":
        raise BadInput(f"--input {spec.name} has dtype {spec.dtype}; the ONNX model takes "
                       "float32 rows", f"write it like {spec.name}:2x"
                       f"{n_features or 'FEATURES'}:float32")
    return np.random.default_rng(0).uniform(-1, 1, spec.shape).astype(np.float32)


def _input_name(renames: tuple[str, ...] | None, key: str | None) -> str:
    if renames is None:
        return key or DEFAULT_INPUT
    if len(renames) != 1:
        raise BadInput(f"{len(renames)} input names given ({', '.join(renames)}) but a "
                       "scikit-learn model takes one input (rows x features)",
                       "give one name, e.g. --input-names features")
    return renames[0]


def _output_names(defaults: tuple[str, ...], requested: tuple[str, ...] | None,
                  name: str) -> list[str]:
    if requested is None:
        return list(defaults)
    requested = tuple(requested)
    if len(requested) != len(defaults):
        raise BadInput(f"{len(requested)} output names given ({', '.join(requested)}) but "
                       f"{name} has {len(defaults)} output(s) ({', '.join(defaults)})",
                       "give one name per output, in that order")
    if len(set(requested)) != len(requested):
        raise BadInput(f"output names repeat: {', '.join(requested)}",
                       "each output needs its own name")
    return list(requested)


def _plain(value: Any) -> Any:
    return value if isinstance(value, (int, float, str, bool)) else str(value)


def _first_line(exc: BaseException, limit: int = 160) -> str:
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    return text if len(text) <= limit else text[:limit - 3] + "..."
