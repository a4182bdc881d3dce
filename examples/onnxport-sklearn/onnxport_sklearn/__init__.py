"""onnxport plugin: scikit-learn estimators and Pipelines to ONNX through skl2onnx.

Registers the backend `sklearn` and the runner `sklearn` (the fitted estimator itself,
which verification compares onnxruntime's results with). Importing this module imports
neither scikit-learn nor skl2onnx: onnxport imports every plugin for every command, so
`load`, `export` and the runner import them when a model is actually converted.
"""

from __future__ import annotations

import functools
import importlib.util
import re

from onnxport.host import hookimpl
from onnxport.records import Backend, Requirements, Runner

from .detect import can_load

MIN_OPSET = 9  # ONNX 1.4 (2019): older opsets are not tried with these converters

# Not onnxport extras: this distribution's own dependencies, which reinstalling it brings.
INSTALL = "pip install 'onnxport-sklearn'"
REQUIRES = Requirements(modules=("sklearn", "skl2onnx", "onnx"), install=INSTALL)


@functools.lru_cache(maxsize=1)
def _opsets() -> dict[str, tuple[int, int]]:
    """The installed skl2onnx's opset range, read from its source without importing it
    (which would import scikit-learn), so that onnxport refuses an impossible --opset
    before loading anything; export checks again after importing skl2onnx."""
    try:
        spec = importlib.util.find_spec("skl2onnx")
        text = open(spec.origin, encoding="utf-8").read() if spec and spec.origin else ""
    except (OSError, ImportError, ValueError):
        return {}
    found = re.search(r"^__max_supported_opset__\s*=\s*(\d+)", text, re.MULTILINE)
    return {"skl2onnx": (MIN_OPSET, int(found.group(1)))} if found else {}


def _load(request):
    from .loading import load

    return load(request)


def _export(loaded, request):
    from .exporting import export

    return export(loaded, request)


def _open(loaded, options):
    from .running import SklearnSession

    return SklearnSession(loaded, options)


@hookimpl
def onnxport_register_backends(register):
    register(Backend(
        name="sklearn",
        description="scikit-learn estimators and Pipelines through skl2onnx (classifiers "
                    "without ZipMap: label int64 and probabilities float32)",
        accepts="a fitted estimator or Pipeline, or a factory returning one (or "
                "(model, X)); a .pkl/.joblib file with --trust-code",
        can_load=can_load,
        load=_load,
        export=_export,
        runner="sklearn",
        exporters=("skl2onnx",),
        opsets=_opsets(),
        requires=REQUIRES,
    ))


@hookimpl
def onnxport_register_runners(register):
    register(Runner(
        name="sklearn",
        description="runs the fitted scikit-learn estimator (predict, predict_proba, "
                    "transform) on the CPU",
        open=_open,
        requires=Requirements(modules=("sklearn",), install=INSTALL),
    ))
