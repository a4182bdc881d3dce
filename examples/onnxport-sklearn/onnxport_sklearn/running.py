"""The source runner: the fitted estimator itself, so that onnxport's verification
compares scikit-learn's answers (predict, predict_proba, transform...) with
onnxruntime's on the same rows."""

from __future__ import annotations

import contextlib
from typing import Any, Mapping

import numpy as np
import sklearn

from onnxport.records import LoadedModel, RunOptions

from .outputs import OutputPlan, compute_outputs


class SklearnSession:
    def __init__(self, loaded: LoadedModel, options: RunOptions):
        details = loaded.details
        self.model = loaded.model
        self.plan = OutputPlan(details["kind"], tuple(loaded.output_names),
                               tuple(details["outputs"].values()),
                               details.get("label") == "index into classes")
        self.input_names = list(loaded.input_names)
        self.output_names = list(loaded.output_names)
        self.dtype = details.get("source_dtype", "float64")
        self.threads = options.threads
        self.providers = [f"scikit-learn {sklearn.__version__} cpu"]

    def run(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        X = np.asarray(feeds[self.input_names[0]])
        with self._threads():
            values = compute_outputs(self.model, self.plan, X, self.dtype)
        return dict(zip(self.output_names, values))

    def _threads(self):
        if not self.threads:
            return contextlib.nullcontext()
        from threadpoolctl import threadpool_limits  # a scikit-learn dependency

        return threadpool_limits(limits=self.threads)

    def close(self) -> None:
        self.model = None
