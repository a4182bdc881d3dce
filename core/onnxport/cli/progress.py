"""Progress lines on a terminal, as an observer plugin of the stage hooks."""

from __future__ import annotations

import sys

from onnxport.host import PluginHost, hookimpl
from onnxport.records import StageEvent

_MARKS = {"ok": "ok", "warning": "warning", "skipped": "skipped", "failed": "FAILED"}


class TerminalProgress:
    """Prints one line per finished stage to stderr, only when stderr is a terminal."""

    name = "onnxport-progress"

    def __init__(self, host: PluginHost, stream=None):
        self.host = host
        self.stream = stream or sys.stderr

    @classmethod
    def attach(cls, host: PluginHost, stream=None) -> "TerminalProgress":
        progress = cls(host, stream)
        if progress.stream.isatty():
            host.register(progress, cls.name)
        return progress

    def detach(self) -> None:
        if self.name in self.host.infos:
            self.host.unregister(self.name)

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
