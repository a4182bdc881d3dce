"""Which scikit-learn method each ONNX output stands for, so both sides can be compared.

skl2onnx names and orders its outputs by the kind of estimator (a classifier gives
`label` then `probabilities`); here each of those outputs is tied to the method that
computes the same values in scikit-learn. The source runner calls exactly these methods,
and the export reshapes the ONNX outputs to the shapes these methods return, so the
verification compares like with like.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class OutputPlan:
    kind: str  # for people: "classifier", "regressor", ...
    names: tuple[str, ...]  # skl2onnx's output names, in its order: the default names
    methods: tuple[str, ...]  # the scikit-learn method giving each output
    label_index: bool = False  # labels exported as indices into classes_ (non-numeric)

    def describe(self) -> dict[str, str]:
        return dict(zip(self.names, self.methods))


def output_plan(model: Any) -> OutputPlan:
    """What to compare for this estimator; an estimator with neither `predict` nor
    `transform` has nothing to compare and gets a ValueError (the loader words it)."""
    from sklearn.base import is_classifier, is_outlier_detector, is_regressor

    if is_classifier(model):
        if isinstance(getattr(model, "classes_", None), list):
            raise ValueError("it is a multi-output classifier (one classes_ array per "
                             "target), which this plugin does not convert")
        label_index = not _numeric_integral(np.asarray(model.classes_))
        if hasattr(model, "predict_proba"):
            return OutputPlan("classifier", ("label", "probabilities"),
                              ("predict", "predict_proba"), label_index)
        # skl2onnx's second output is then a decision score whose layout differs from
        # one converter to the next; the label is what such a model is used for.
        return OutputPlan("classifier", ("label",), ("predict",), label_index)
    if is_regressor(model):
        return OutputPlan("regressor", ("variable",), ("predict",))
    if is_outlier_detector(model):
        return OutputPlan("outlier detector", ("label", "scores"),
                          ("predict", "decision_function"))
    has_predict = hasattr(model, "predict")
    if has_predict and hasattr(model, "transform"):  # KMeans: scores are the distances
        return OutputPlan("clusterer", ("label", "scores"), ("predict", "transform"))
    if has_predict and hasattr(model, "predict_proba"):  # GaussianMixture
        return OutputPlan("mixture", ("label", "probabilities"),
                          ("predict", "predict_proba"))
    if hasattr(model, "transform") and not has_predict:
        return OutputPlan("transformer", ("variable",), ("transform",))
    raise ValueError("it has no predict or transform method to compare the ONNX model "
                     "with")


def compute_outputs(model: Any, plan: OutputPlan, X: np.ndarray,
                    dtype: str = "float64") -> list[np.ndarray]:
    """The plan's methods on X, as dense arrays; labels as int64, as ONNX gives them.

    X (float32 rows, as the ONNX model takes them) is cast to `dtype` exactly: float64
    gives scikit-learn's most precise answer; some estimators only take the dtype they
    were fitted with (KMeans.predict in scikit-learn 1.9), which the loader finds out.
    """
    X = np.asarray(X).astype(dtype, copy=False)
    results = []
    with warnings.catch_warnings():
        # fitted on a DataFrame, fed an array (as the ONNX model is): same columns
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        for method in plan.methods:
            value = getattr(model, method)(X)
            if hasattr(value, "toarray"):  # a sparse transform result
                value = value.toarray()
            value = np.asarray(value)
            if method == "predict" and plan.kind == "classifier":
                value = (np.searchsorted(np.asarray(model.classes_), value)
                         if plan.label_index else value).astype(np.int64)
            elif method == "predict" and plan.kind != "regressor":
                value = value.astype(np.int64)
            results.append(value)
    return results


def _numeric_integral(classes: np.ndarray) -> bool:
    """Labels ONNX can carry as int64 unchanged: integers, or floats holding integers."""
    if classes.ndim != 1:
        return False
    if classes.dtype.kind in "iu":
        return True
    return classes.dtype.kind == "f" and bool(np.all(np.mod(classes, 1) == 0))
