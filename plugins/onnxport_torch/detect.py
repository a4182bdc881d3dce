"""Whether a source is a PyTorch model, decided without importing torch."""

from __future__ import annotations

from onnxport.records import Source

FILE_SUFFIXES = (".pt", ".pth", ".pt2")
_TORCH_TYPES = {"torch.nn.modules.module.Module",
                "torch.export.exported_program.ExportedProgram"}


def can_load(source: Source) -> bool:
    if source.kind == "path":
        return source.path.is_file() and source.path.suffix.lower() in FILE_SUFFIXES
    return is_torch_model(source.value)


def is_torch_model(obj: object) -> bool:
    return any(f"{cls.__module__}.{cls.__qualname__}" in _TORCH_TYPES
               for cls in type(obj).__mro__)
