"""A stage of a conversion as observers see it: started, then finished with its status
and time, and a model's `sys.exit` turned into a failure on the way. Each is also a
record of the `onnxport.flow` logger (INFO), which `-v` shows."""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from typing import Iterator

from onnxport.errors import Crashed
from onnxport.host import PluginHost
from onnxport.records import StageEvent

LOG = logging.getLogger("onnxport.flow")


@contextmanager
def stage_events(host: PluginHost, stage: str, target: str | None,
                 timings: dict[str, float], detail: str = "") -> Iterator[dict[str, str]]:
    """Call the stage hooks around a block; the block may set `note["status"]` and
    `note["detail"]`. Its time is added to `timings` under the stage's name."""
    where = stage if target is None else f"{stage} ({target})"
    LOG.info("%s started%s", where, f": {detail}" if detail else "")
    host.call("onnxport_stage_started", event=StageEvent(stage, target, "started",
                                                         detail=detail))
    note = {"status": "ok", "detail": ""}
    started = time.perf_counter()
    try:
        try:
            yield note
        except SystemExit as exc:  # never a success, whatever code it exits with
            raise Crashed(f"the model's code called sys.exit({exc.code!r}) in stage "
                          f"{stage}", "a model, its factory and its forward() must not "
                          "exit the process") from None
    except BaseException as exc:
        note["status"], note["detail"] = "failed", str(exc).splitlines()[0] if str(exc) else ""
        raise
    finally:
        seconds = time.perf_counter() - started
        key = stage if target is None else f"{stage}:{target}"
        timings[key] = timings.get(key, 0.0) + seconds
        LOG.info("%s %s in %.2f s%s", where, note["status"], seconds,
                 f": {note['detail']}" if note["detail"] else "")
        host.call("onnxport_stage_finished", event=StageEvent(
            stage, target, note["status"], seconds, note["detail"]))
