"""Whether a source is a scikit-learn model, decided without importing scikit-learn.

The core asks every backend about every source, so this looks only at type names and
file suffixes. Pickle files are claimed here so that `load` can refuse them with the
reason (they execute code when read) instead of the user seeing "no backend can load".
"""

from __future__ import annotations

from onnxport.records import Source

FILE_SUFFIXES = (".pkl", ".pickle", ".joblib")
_ESTIMATOR_BASE = "sklearn.base.BaseEstimator"


def can_load(source: Source) -> bool:
    if source.kind == "path":
        path = source.path
        return path.is_file() and path.suffix.lower() in FILE_SUFFIXES
    return is_sklearn_estimator(source.value)


def is_sklearn_estimator(obj: object) -> bool:
    """True for estimators, pipelines and subclasses of them (by their MRO's names)."""
    return any(f"{cls.__module__}.{cls.__qualname__}" == _ESTIMATOR_BASE
               for cls in type(obj).__mro__)
