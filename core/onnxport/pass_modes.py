"""The modes of a pass whose model is an alternative (INT8, float16), one rule for the
built-in passes and a plugin's alike:

- `off`: the pass does not run;
- `auto`: its model is a candidate; if making it fails, that failure is the reason the
  pass was skipped, and the model it started from goes on;
- `on`: its model is required, so a failure to make it fails the run, with the error's
  first line and what to do.
"""

from __future__ import annotations

from typing import Callable

from onnxport.errors import ExportFailed, OnnxportError
from onnxport.records import PassOutcome, Target

MODES = ("off", "on", "auto")


def mode_of(target: Target, pass_name: str, default: str) -> str:
    """The mode a target's options ask of a pass (`default` when they set none), read
    without validating the rest: a pass's `applies` asks this before its options are
    checked; a value that is not a string is "invalid", which no pass applies for."""
    mode = target.options.get(pass_name, {}).get("mode", default)
    return mode if isinstance(mode, str) else "invalid"


def run_in_mode(mode: str, make: Callable[[], PassOutcome], *, failure: str,
                hint: str) -> PassOutcome:
    """`make()` the pass's model; in mode "on" an unexpected error becomes
    ExportFailed("{failure}: {error}", hint). (The caller handles "off".)"""
    if mode != "on":
        return make()
    try:
        return make()
    except OnnxportError:
        raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise ExportFailed(f"{failure}: {type(exc).__name__}: {first}", hint) from exc
