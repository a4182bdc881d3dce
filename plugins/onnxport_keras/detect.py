"""Whether a source is a Keras model, decided without importing TensorFlow or Keras."""

from __future__ import annotations

from pathlib import Path

from onnxport.records import Source

KERAS_SUFFIXES = (".keras",)
LEGACY_SUFFIXES = (".h5", ".hdf5")  # claimed so that the user hears how to convert them
SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
ACCEPTS = ("a keras.Model (Sequential, Functional or subclassed) or a factory returning "
           "one, a .keras file, a SavedModel directory written by model.export()")

_KERAS_MODEL_TYPES = {"keras.src.models.model.Model"}


def can_load(source: Source) -> bool:
    if source.kind == "path":
        path = source.path
        if path.is_dir():
            return is_saved_model_dir(path)
        return path.is_file() and path.suffix.lower() in (*KERAS_SUFFIXES, *LEGACY_SUFFIXES)
    return is_keras_model(source.value)


def is_saved_model_dir(path: Path) -> bool:
    return any((path / name).is_file() for name in SAVED_MODEL_FILES)


def is_keras_model(obj: object) -> bool:
    return any(f"{cls.__module__}.{cls.__qualname__}" in _KERAS_MODEL_TYPES
               for cls in type(obj).__mro__)
