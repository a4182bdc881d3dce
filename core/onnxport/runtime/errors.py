"""What the runtime raises: each error is one sentence, what went wrong then what to do.
The artifact errors are those of `onnxport.artifact.reading`, which locates and checks
the files."""

from __future__ import annotations

from onnxport.artifact.reading import ArtifactError, ArtifactNotFound, IntegrityError
from onnxport.errors import BadInput, OnnxportError

__all__ = ["ArtifactError", "ArtifactNotFound", "IntegrityError", "InputError",
           "RunFailed"]


class _Explained:
    """str(error) is the whole sentence: what went wrong, then what to do."""

    def __str__(self) -> str:
        return self.one_line()


class InputError(_Explained, BadInput, ValueError):
    """predict() or push() got inputs that do not fit the model: names, shape or dtype."""


class RunFailed(_Explained, OnnxportError, RuntimeError):
    """onnxruntime raised while running inputs that passed the checks."""
