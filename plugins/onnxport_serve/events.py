"""A job's stage events, live: written by this plugin's stage hooks inside the worker
process, read by the server while the job runs.

Executors run a job with `onnxport.flow.worker.run_job`, which passes no observers, but
every worker loads the installed plugins, this one included, and calls their
`onnxport_stage_started/finished` hooks. When the server's environment has
`ONNXPORT_SERVE_EVENTS=1` (set by `onnxport serve` for its workers, and nowhere else),
those hooks append each event as a JSON line beside the job's output directory
(`.NAME.events.jsonl`, found from the output lock the worker holds: Linux `/proc`).
The server reads that file while the job runs. Where the file cannot be shared (a
Ray node with another disk), the job's stages come from its report when it ends.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

ENV = "ONNXPORT_SERVE_EVENTS"
_found: list[Path | None] = []  # this worker's events file, looked up once


def events_file(output: Path) -> Path:
    """Where the worker writing `output` puts its events (beside the output's lock)."""
    output = Path(output).absolute()
    return output.with_name(f".{output.name}.events.jsonl")


def record(event: Any) -> None:
    """In a worker: append one stage event. Never raises (a hook that raises would fail
    the conversion)."""
    if os.environ.get(ENV) != "1":
        return
    try:
        path = _this_workers_file()
        if path is None:
            return
        line = json.dumps({**asdict(event), "at": time.time()}, default=str)
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
    except Exception:
        pass


def _this_workers_file() -> Path | None:
    if _found:
        return _found[0]
    found = None
    try:
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            name = os.path.basename(target)
            if name.startswith(".") and name.endswith(".lock") and len(name) > 6:
                found = Path(target).with_name(name[:-len(".lock")] + ".events.jsonl")
                break
    except OSError:
        return None
    if found is not None:
        _found.append(found)
    return found


class EventTail:
    """The server's reader of one job's events file: new complete lines each call."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.offset = 0

    def read(self) -> list[dict]:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read(1 << 20)
        except OSError:
            return []
        complete = data.rfind(b"\n") + 1
        self.offset += complete
        events = []
        for line in data[:complete].splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and "stage" in event and "status" in event:
                events.append(event)
        return events

    def remove(self) -> None:
        try:
            self.path.unlink()
        except OSError:
            pass


def from_report(report: dict | None) -> list[dict]:
    """Stage events reconstructed from a report.json, when none came live."""
    if not report:
        return []
    events = []
    timings = report.get("timings_s") or {}
    for stage in ("load", "export"):
        if stage in timings:
            events.append({"stage": stage, "target": None, "status": "ok",
                           "seconds": timings[stage], "detail": "from the report"})
    for name, target in (report.get("targets") or {}).items():
        for stage in target.get("stages") or []:
            events.append({"stage": stage.get("stage", "?"), "target": name,
                           "status": stage.get("status", "?"),
                           "seconds": timings.get(f"{stage.get('stage')}:{name}", 0.0),
                           "detail": stage.get("reason") or "from the report"})
    return events
