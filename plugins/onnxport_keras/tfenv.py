"""Importing TensorFlow, Keras and tf2onnx the way conversion needs them.

- TensorFlow's C++ info and warning logs are silenced (TF_CPP_MIN_LOG_LEVEL=2) and Keras
  is told to use its TensorFlow backend, when they are not imported yet;
- GPUs are hidden from TensorFlow (`tf.config.set_visible_devices([], "GPU")`) before it
  initialises its devices, so a traced LSTM never becomes `CudnnRNNV3` (the exporter also
  sets `use_cudnn=False` on recurrent layers while it traces, for processes where
  TensorFlow already initialised a GPU). CUDA_VISIBLE_DEVICES is left alone, so PyTorch
  in the same process keeps its GPUs;
- a missing package is a `MissingDependency` naming the `keras` extra.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
from typing import Iterator

from onnxport.errors import BadInput, MissingDependency

EXTRA = "keras"
_gpus_hidden = False


def import_tensorflow(needed_for: str = "the keras backend"):
    if "tensorflow" not in sys.modules:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        with quiet_native_stderr():  # absl logs before InitializeLog ignore the level
            tf = _import("tensorflow", needed_for)
    else:
        tf = sys.modules["tensorflow"]
    global _gpus_hidden
    if not _gpus_hidden:
        _gpus_hidden = True
        try:
            tf.config.set_visible_devices([], "GPU")
        except (RuntimeError, ValueError):
            pass  # devices already initialised by the caller; use_cudnn=False still applies
    return tf


def import_keras(needed_for: str = "the keras backend"):
    if "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = "tensorflow"
    import_tensorflow(needed_for)
    if "keras" not in sys.modules:
        with quiet_native_stderr():
            keras = _import("keras", needed_for)
    else:
        keras = sys.modules["keras"]
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise BadInput(f"Keras runs on its '{backend}' backend here; onnxport converts "
                       "Keras models through TensorFlow",
                       "set KERAS_BACKEND=tensorflow before Keras is imported")
    return keras


def import_tf2onnx(needed_for: str = "the keras backend"):
    import_tensorflow(needed_for)
    if "tf2onnx" in sys.modules:
        return sys.modules["tf2onnx"]
    with quiet_native_stderr():
        return _import("tf2onnx", needed_for)


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Send file descriptor 2 to a temporary file for a block of native code that
    announces itself there (TensorFlow's oneDNN and CPU-feature notices on import, the
    TFLite interpreter's XNNPACK notice); replay it if the block fails."""
    import tempfile

    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _import(name: str, needed_for: str):
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        top = (getattr(exc, "name", None) or name).split(".")[0]
        raise MissingDependency(top if top in ("tensorflow", "keras", "tf2onnx", "onnx")
                                else name, EXTRA, needed_for) from exc


@contextlib.contextmanager
def numpy2_aliases() -> Iterator[None]:
    """tf2onnx 1.17 still calls `np.product`, removed in numpy 2.0 (in its large-model
    external-data path and its tfjs reader). For the length of a conversion, and only if
    numpy lacks it, `np.product` is an alias of `np.prod`; it is removed afterwards."""
    import numpy as np

    added = not hasattr(np, "product")
    if added:
        np.product = np.prod
    try:
        yield
    finally:
        if added:
            del np.product


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def captured_tf2onnx_log() -> Iterator[list[logging.LogRecord]]:
    """tf2onnx reports unsupported ops and dropped attributes only in its log: collect
    the log for the conversion (instead of printing it) so the exporter can act on it."""
    logger = logging.getLogger("tf2onnx")
    collector = _Collector()
    saved = logger.level, logger.propagate, list(logger.handlers)
    for handler in saved[2]:
        logger.removeHandler(handler)
    logger.addHandler(collector)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield collector.records
    finally:
        logger.removeHandler(collector)
        for handler in saved[2]:
            logger.addHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
