"""How the source model takes its inputs: by position, or by name.

A tuple of example inputs is passed by position (`model(a, b)`), and its ONNX inputs take
forward()'s names in that order. A dict (or `--input NAME:SHAPE`) is passed by name
(`model(input_ids=..., attention_mask=...)`): the only binding that is right for a
forward() that takes `**kwargs` (most Hugging Face models), or whose dict skips an
argument, since position would hand a tensor to whichever parameter sits there. The
loader records the binding and forward()'s argument names in `LoadedModel.details`; the
exporter, the source runner and `diagnose` all call the model through here.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Sequence

POSITIONAL = "positional"
KEYWORD = "keyword"


@dataclass(frozen=True)
class Signature:
    """forward()'s named parameters in order, and whether it also takes *args, **kwargs."""

    names: tuple[str, ...]
    var_positional: bool = False
    var_keyword: bool = False

    def describe(self, class_name: str) -> str:
        shown = [*self.names, *(["*args"] if self.var_positional else []),
                 *(["**kwargs"] if self.var_keyword else [])]
        return f"{class_name}.forward({', '.join(shown)})"


def signature_of(model: Any) -> Signature:
    parameters = inspect.signature(model.forward).parameters.values()
    return Signature(
        names=tuple(p.name for p in parameters
                    if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)),
        var_positional=any(p.kind is p.VAR_POSITIONAL for p in parameters),
        var_keyword=any(p.kind is p.VAR_KEYWORD for p in parameters))


def binding_of(loaded) -> tuple[str, list[str]]:
    """(binding, forward()'s argument name for each ONNX input, in input order)."""
    details = loaded.details or {}
    arguments = details.get("forward_arguments") or list(loaded.input_names)
    return details.get("binding", POSITIONAL), list(arguments)


def call(model: Any, tensors: Sequence[Any], arguments: Sequence[str], binding: str):
    """`model(*tensors)`, or `model(**{argument: tensor})` for the keyword binding."""
    if binding == KEYWORD:
        return model(**dict(zip(arguments, tensors)))
    return model(*tensors)
