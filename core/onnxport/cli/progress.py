"""Progress lines on a terminal: an observer of the stage hooks for one conversion."""

from __future__ import annotations

import sys

from onnxport.host import hookimpl
from onnxport.records import StageEvent

_MARKS = {"ok": "ok", "warning": "warning", "skipped": "skipped", "failed": "FAILED"}


class TerminalProgress:
    """Prints one line per finished stage to stderr (given to a conversion as one of its
    `observers`; the CLI does so only when stderr is a terminal)."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr

    @hookimpl
    def onnxport_stage_started(self, event: StageEvent) -> None:
        where = f" [{event.target}]" if event.target else ""
        print(f"  {event.stage}{where} ...", end="\r", file=self.stream, flush=True)

    @hookimpl
    def onnxport_stage_finished(self, event: StageEvent) -> None:
        where = f" [{event.target}]" if event.target else ""
        detail = f"  {event.detail}" if event.detail else ""
        line = f"  {event.stage}{where}: {_MARKS.get(event.status, event.status)} " \
               f"{event.seconds:.1f}s{detail}"
        print(line[:99].ljust(40), file=self.stream, flush=True)
