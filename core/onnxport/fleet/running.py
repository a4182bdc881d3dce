"""Running a fleet: plan every model's request, skip what has not changed, hand the rest
to an executor plugin, and keep one row per model as the jobs report back.

Every model goes through exactly the flow `onnxport convert` runs, in a worker process
of its own (`flow.worker.run_job`): an executor only decides where those workers run.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import urlparse

from onnxport.artifact.committing import is_artifact
from onnxport.artifact.reading import REPORT, read_json
from onnxport.errors import BadInput, ExitCode
from onnxport.fleet.file import Fleet, FleetModel
from onnxport.fleet.keys import fleet_key, recorded_key
from onnxport.flow.building import build_request, request_to_json
from onnxport.host import PluginHost
from onnxport.records import ConversionOutcome, ExecutorOptions, Job, JobUpdate

STATES = ("queued", "running", "passed", "failed", "skipped")


@dataclass
class FleetRow:
    """One model of a fleet, as it stands."""

    name: str
    source: str
    state: str = "queued"
    key: str = ""
    outcome: ConversionOutcome | None = None
    reason: str = ""  # why it was skipped, or why it failed before running
    location: str | None = None  # the artifact directory or published URI

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "state": self.state,
                "key": self.key, "reason": self.reason, "location": self.location,
                "outcome": self.outcome.to_json() if self.outcome else None}


@dataclass
class FleetResult:
    fleet: Path
    destination: str
    executor: str
    rows: list[FleetRow]
    seconds: float = 0.0
    jobs: int | None = None
    started: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(r.state in ("passed", "skipped") for r in self.rows)

    def counts(self) -> dict[str, int]:
        return {s: sum(r.state == s for r in self.rows) for s in STATES}


def run_fleet(fleet: Fleet, destination: str, host: PluginHost, *,
              executor: str = "local", jobs: int | None = None,
              address: str | None = None, force: bool = False,
              default_timeout: float | None = None,
              on_update: Callable[[FleetRow], None] | None = None) -> FleetResult:
    """Convert every model of `fleet` into `destination` (a directory, or a publisher
    URI such as s3://bucket/prefix) with the executor plugin named `executor`."""
    record = host.get("executor", executor)
    remote = _is_uri(destination)
    parsed = urlparse(str(destination))
    root = None if remote else Path(parsed.path if parsed.scheme == "file" else destination)
    if root is not None:
        _check_destination(root)
    started = time.time()
    rows, planned = [], []
    staging = Path(tempfile.mkdtemp(prefix="onnxport-fleet-")) if remote else None
    versions = {info.name: info.version for info in host.infos.values()}
    for model in fleet.models:
        row, job = _plan(model, root, staging, destination if remote else None, versions,
                         force, default_timeout)
        rows.append(row)
        if job is not None:
            planned.append(job)
    by_name = {row.name: row for row in rows}
    lock = threading.Lock()

    def update(change: JobUpdate) -> None:
        with lock:
            row = by_name[change.key]
            if change.state == "running":
                row.state = "running"
            else:
                row.outcome = change.outcome
                row.state = "passed" if change.outcome.passed else "failed"
                row.location = (change.outcome.published[0] if change.outcome.published
                                else change.outcome.output)
        if on_update is not None:
            on_update(row)

    if on_update is not None:
        for row in rows:
            on_update(row)
    try:
        if planned:
            record.run(planned, ExecutorOptions(jobs=jobs, address=address), update)
    except BaseException:
        if root is not None and root.is_dir() and not any(root.iterdir()):
            root.rmdir()  # the executor could not start: leave nothing behind
        raise
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    for row in rows:  # an executor that lost a job: never a silent pass
        if row.state in ("queued", "running"):
            row.state = "failed"
            row.outcome = ConversionOutcome(
                passed=False, exit_code=ExitCode.CRASHED, cause="lost",
                message=f"the {executor} executor returned without a result for it")
    return FleetResult(fleet.path, destination, executor, rows, time.time() - started,
                       jobs, time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)))


def _plan(model: FleetModel, root: Path | None, staging: Path | None, uri: str | None,
          versions: dict[str, str], force: bool, default_timeout: float | None
          ) -> tuple[FleetRow, Job | None]:
    """The row and the job of one model; no job when it is skipped or cannot start."""
    row = FleetRow(model.name, model.source)
    output = (root or staging) / model.name
    try:
        request = build_request(model.source, output=output, name=model.name,
                                overwrite=True, made_by={}, **model.options)
        row.key = fleet_key(request, versions)
    except BadInput as exc:  # this model's mistake: it fails, the others run
        row.state, row.reason = "failed", exc.one_line()
        row.outcome = ConversionOutcome(passed=False, exit_code=exc.exit_code,
                                        name=model.name, message=exc.message, hint=exc.hint)
        return row, None
    if root is not None and not force and _unchanged(output, row.key):
        row.state, row.location = "skipped", str(output)
        row.reason = "unchanged since its last verified artifact (--force converts it again)"
        row.outcome = ConversionOutcome(passed=True, exit_code=ExitCode.OK,
                                        name=model.name, output=str(output),
                                        report=read_json(output / REPORT, "report"))
        return row, None
    request.made_by = {"fleet": {"name": model.name, "key": row.key}}
    return row, Job(key=model.name, request=request_to_json(request),
                    timeout=model.timeout if model.timeout is not None else default_timeout,
                    publish=(uri,) if uri else ())


def _unchanged(output: Path, key: str) -> bool:
    report = output / REPORT
    if not report.is_file():
        return False
    recorded = read_json(report, "report")
    return recorded.get("status") == "passed" and recorded_key(recorded) == key


def _check_destination(root: Path) -> None:
    """A directory destination must be writable, and may hold only a fleet's artifacts."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / ".onnxport-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise BadInput(f"the fleet's destination {root} cannot be written ({exc.strerror})",
                       "choose a directory you can write to") from exc
    strangers = [p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
                 and not is_artifact(p) and any(p.iterdir())]
    if strangers:
        raise BadInput(f"the fleet's destination {root} holds {strangers[0]}, which is not "
                       "an onnxport artifact", "choose a directory of its own for the fleet")


def _is_uri(destination: str) -> bool:
    parsed = urlparse(str(destination))
    return bool(parsed.scheme) and len(parsed.scheme) > 1 and parsed.scheme != "file"


def models_named(fleet: Fleet, names: Iterable[str]) -> Fleet:
    """The fleet restricted to some models (`--only`)."""
    wanted = list(names)
    known = {m.name for m in fleet.models}
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise BadInput(f"{fleet.path} has no model '{unknown[0]}'",
                       "its models: " + ", ".join(sorted(known)))
    return Fleet(fleet.path, [m for m in fleet.models if m.name in wanted])
