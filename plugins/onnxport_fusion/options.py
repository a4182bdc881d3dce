"""The `fuse` pass's settings (a target's options["fuse"]), checked by name and type.

Nothing here imports onnx or onnxruntime. Whether a `model_type` is one the installed
onnxruntime knows is checked when the pass runs (the list changes between versions).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from onnxport.errors import BadInput
from onnxport.options import option, parse_options as parse

MODES = ("auto", "off")  # auto: fuse when the graph is a transformer; off: do not apply
# keep: Add + LayerNormalization stay for the session to run; fuse: onnxruntime's
# SkipLayerNormalization and EmbedLayerNormalization (what Optimum -O2 and Olive make).
# Measured (benchmarks/fusion_norms.py, onnxruntime 1.32 CPU, one thread, BERTs with
# hidden 64 and 256): the fused norms are 10-20% slower at batch 1 and 17-45% slower at
# batch 8, so "keep" is the default and "fuse" a candidate of --optimize thorough.
NORMS = ("keep", "fuse")
DEFAULT_TIMEOUT = 300.0  # seconds; the tiny test models take about 3 s (mostly imports)
_MODEL_TYPE = re.compile(r"^[a-z][a-z0-9_]*$")


def _model_type(value: str) -> str:
    name = value.strip().lower()
    if not _MODEL_TYPE.match(name):
        raise ValueError(f"{value!r} is not a model type name",
                         "e.g. bert, gpt2 or vit (onnxruntime.transformers.optimizer's "
                         "MODEL_TYPES), or leave it out to detect it from the graph")
    return name


@dataclass(frozen=True)
class FuseOptions:
    mode: str = option("auto", choices=MODES, help="auto: fuse when the graph is a "
                       "transformer; off: do not apply")
    model_type: str | None = option(None, convert=_model_type,
                                    help="bert, gpt2, vit, ... (default: from the graph)")
    norms: str = option("keep", choices=NORMS,
                        help="keep: leave Add + LayerNormalization to the session; "
                             "fuse: SkipLayerNormalization and EmbedLayerNormalization")
    num_heads: int = option(0, minimum=0, help="0: detected from the graph")
    hidden_size: int = option(0, minimum=0, help="0: detected from the graph")
    timeout: float = option(DEFAULT_TIMEOUT, above=0,
                            help="seconds before the optimizer's process is stopped")



def parse_options(options: Mapping[str, Any], target: str) -> FuseOptions:
    """The pass's settings; an unknown key, a wrong type or value is the user's to fix."""
    parsed = parse(FuseOptions, options, where=f"target '{target}'", prefix="fuse.")
    if parsed.num_heads and parsed.hidden_size and parsed.hidden_size % parsed.num_heads:
        raise BadInput(f"target '{target}': fuse.hidden_size ({parsed.hidden_size}) must "
                       f"be a multiple of fuse.num_heads ({parsed.num_heads})")
    return parsed
