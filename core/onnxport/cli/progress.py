"""Progress lines on a terminal: an observer of the stage hooks for one conversion.

A stage that takes long (a large export, a latency run) shows it is alive: its line
counts the seconds until it ends."""

from __future__ import annotations

import sys
import threading
import time

from onnxport.host import hookimpl
from onnxport.records import StageEvent

_MARKS = {"ok": "ok", "warning": "warning", "skipped": "skipped", "failed": "FAILED"}
TICK = 2.0  # seconds between two updates of a running stage's line


def progress_observers(args) -> list["TerminalProgress"]:
    """A progress display for a command, when a person watches stderr and did not ask
    for quiet: never in a pipe, a log file or CI, where the lines would be noise."""
    return [] if getattr(args, "quiet", False) or not sys.stderr.isatty() \
        else [TerminalProgress()]


class TerminalProgress:
    """Prints one line per finished stage to stderr (given to a conversion as one of its
    `observers`; the CLI does so only when stderr is a terminal)."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self._running: tuple[str, float] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    @hookimpl
    def onnxport_stage_started(self, event: StageEvent) -> None:
        where = f" [{event.target}]" if event.target else ""
        what = f" {event.detail}" if event.detail else ""
        with self._lock:
            self._running = (f"{event.stage}{where}{what}", time.monotonic())
        self._write(f"  {event.stage}{where}{what} ...")
        if self._ticker is None:
            self._ticker = threading.Thread(target=self._tick, daemon=True)
            self._ticker.start()

    @hookimpl
    def onnxport_stage_finished(self, event: StageEvent) -> None:
        where = f" [{event.target}]" if event.target else ""
        detail = f"  {event.detail}" if event.detail else ""
        line = f"  {event.stage}{where}: {_MARKS.get(event.status, event.status)} " \
               f"{event.seconds:.1f}s{detail}"
        with self._lock:  # no tick may rewrite the line after this
            self._running = None
            print("\r" + line[:99].ljust(40), file=self.stream, flush=True)

    def close(self) -> None:
        self._stop.set()

    def _tick(self) -> None:
        while not self._stop.wait(TICK):
            with self._lock:
                if self._running is not None:
                    name, started = self._running
                    self._write(f"  {name} ... {time.monotonic() - started:.0f}s")

    def _write(self, text: str) -> None:
        print("\r" + text[:99].ljust(40), end="", file=self.stream, flush=True)
