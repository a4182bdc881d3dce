"""The `float16` pass's settings (a target's options["float16"]), checked by name, type
and value. Nothing here imports onnx or onnxruntime."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from onnxport.pass_modes import MODES
from onnxport.options import option, parse_options as parse
from onnxport.records import Tolerance

DEFAULT_TIMEOUT = 300.0  # seconds; the reference models take about 2 s (mostly imports)


def _at_most_one(value: float) -> float:
    if value > 1:
        raise ValueError(f"must be at most 1, not {value!r}")
    return value


# The example fp16 plugin's budget (examples/onnxport-fp16/onnxport_fp16/options.py):
# float16 keeps 11 significant bits (relative rounding 4.9e-4) and the error adds up over
# layers in proportion to the values inside the model, not to the output's spread: per
# element atol + rtol 1e-2, and cosine >= 0.999 for outputs that are small everywhere.
DEFAULT_TOLERANCE = Tolerance(atol=1e-2, rtol=1e-2, min_cosine=0.999)


@dataclass(frozen=True)
class Float16Options:
    mode: str = option("auto", choices=MODES, help="off, on (float16 ships within its "
                       "budget) or auto (a float16 candidate competes with fp32: the "
                       "faster one that verifies ships)")
    block_ops: tuple[str, ...] = option((), help="op types kept float32, besides "
                                        "onnxruntime's default block list")
    atol: float = option(DEFAULT_TOLERANCE.atol, minimum=0,
                         help="float16 budget: absolute error per element")
    rtol: float = option(DEFAULT_TOLERANCE.rtol, minimum=0,
                         help="float16 budget: error relative to the source's value")
    min_cosine: float = option(DEFAULT_TOLERANCE.min_cosine, minimum=0,
                               convert=_at_most_one, help="float16 budget: cosine "
                               "similarity to the source, per output")
    timeout: float = option(DEFAULT_TIMEOUT, above=0,
                            help="seconds before the converter's process is stopped")

    @property
    def tolerance(self) -> Tolerance:
        return Tolerance(atol=self.atol, rtol=self.rtol, min_cosine=self.min_cosine)



def parse_options(options: Mapping[str, Any], target: str) -> Float16Options:
    return parse(Float16Options, options, where=f"target '{target}'", prefix="float16.")
