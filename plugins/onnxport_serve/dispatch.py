"""The dispatcher: takes queued jobs from the database and runs each through the
executor plugin the server was started with, one job per executor call, in a bounded
pool of slot threads (`--jobs`).

One job per call is what makes a job's own timeout (`Job.timeout`), its cancellation
and a graceful stop work with any executor: every slot waits for exactly one
conversion. The executor runs it as fleets do (`flow.worker.run_job`: a worker process
per conversion), so a crash, an abort or a hang is that job's outcome, never the
server's.

A monitor thread beats the server's heartbeat into the database, reads live stage
events, stops the workers of cancelled jobs, and takes over the running jobs of
servers that died (sharing the database): retried once (`--retries`), or marked
interrupted with the cause.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onnxport.errors import ExitCode, OnnxportError
from onnxport.records import ConversionOutcome, ExecutorOptions, Job, JobUpdate

from .events import EventTail, events_file, from_report
from .jobs import JobStore, cancelled_error
from .settings import Settings
from .workers import kill_worker

log = logging.getLogger("onnxport.serve")


@dataclass
class Running:
    job: dict[str, Any]
    output: Path
    tail: EventTail
    attempt: int
    stopping: bool = False  # a graceful stop killed it: requeue, do not record
    killed: bool = False
    started: float = field(default_factory=time.monotonic)


class Dispatcher:
    def __init__(self, settings: Settings, store: JobStore, host, slots: int):
        self.settings = settings
        self.store = store
        self.executor = host.get("executor", settings.executor)
        self.slots = slots
        self.server_id = f"s-{uuid.uuid4().hex[:12]}"
        self._stop = threading.Event()
        self._wake = threading.Condition()
        self._running: dict[str, Running] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.local = settings.executor == "local"

    # ------------------------------------------------------------------ life

    def start(self) -> None:
        self.store.register_server(self.server_id, self.settings.address)
        self.recover()
        for index in range(self.slots):
            self._spawn(self._slot, f"onnxport-slot-{index}")
        self._spawn(self._monitor, "onnxport-monitor")

    def _spawn(self, target, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    @property
    def alive(self) -> bool:
        return not self._stop.is_set() and all(t.is_alive() for t in self._threads)

    def running_count(self) -> int:
        with self._lock:
            return len(self._running)

    def wake(self) -> None:
        with self._wake:
            self._wake.notify()

    def stop(self, drain: float) -> dict[str, int]:
        """Take no more jobs; give the running ones `drain` seconds to finish; kill
        and requeue the rest (never counted as an attempt)."""
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        deadline = time.monotonic() + drain
        while self.running_count() and time.monotonic() < deadline:
            time.sleep(0.2)
        with self._lock:
            left = list(self._running.values())
        for running in left:
            running.stopping = True
        deadline = time.monotonic() + 15
        while self.running_count() and time.monotonic() < deadline:
            if self.local:  # a worker still starting has no pid yet: try again
                for running in left:
                    kill_worker(running.output)
            time.sleep(0.2)
        with self._lock:  # still running on another machine (Ray): requeue it now
            stuck = list(self._running.values())
        for running in stuck:
            self.store.requeue(running.job["id"], self.server_id, refund=True)
        self.store.server_stopped(self.server_id)
        return {"requeued": len(left)}

    # ------------------------------------------------------------------ slots

    def _slot(self) -> None:
        while not self._stop.is_set():
            try:
                job = self.store.claim(self.server_id)
            except Exception as exc:  # a locked or busy database: try again
                log.warning("cannot claim a job: %s", exc)
                job = None
            if job is None:
                with self._wake:
                    self._wake.wait(1.0)
                continue
            try:
                self._run(job)
            except Exception:  # never lose the slot
                log.exception("job %s", job["id"])

    def _run(self, job: dict[str, Any]) -> None:
        spec = job["job"]
        output = Path(job["output"])
        running = Running(job, output, EventTail(events_file(output)), job["attempts"])
        with self._lock:
            self._running[job["id"]] = running
        outcomes: list[ConversionOutcome] = []

        def update(change: JobUpdate) -> None:
            if change.state == "finished" and change.outcome is not None:
                outcomes.append(change.outcome)

        record = Job(key=job["id"], request=spec["request"], timeout=spec.get("timeout"),
                     publish=tuple(spec.get("publish") or ()))
        try:
            self.executor.run([record], ExecutorOptions(
                jobs=1, address=self.settings.ray_address), update)
        except OnnxportError as exc:
            outcomes.append(ConversionOutcome(
                passed=False, exit_code=exc.exit_code, cause="executor",
                message=f"the {self.settings.executor} executor could not run it: "
                        f"{exc.message}", hint=exc.hint))
        except Exception as exc:
            outcomes.append(ConversionOutcome(
                passed=False, exit_code=ExitCode.INTERNAL, cause="executor",
                message=f"the {self.settings.executor} executor failed: "
                        f"{type(exc).__name__}: {exc}"))
        finally:
            with self._lock:
                self._running.pop(job["id"], None)
        self._conclude(running, outcomes[0] if outcomes else None)

    def _conclude(self, running: Running, outcome: ConversionOutcome | None) -> None:
        job = running.job
        self._ingest(running)
        running.tail.remove()
        if running.stopping and (outcome is None or outcome.cause == "signal"):
            self.store.requeue(job["id"], self.server_id, refund=True)  # we killed it
            return
        current = self.store.get(job["id"]) or job
        if current["cancel_requested"]:
            self._discard(outcome)
            self.store.finish(job["id"], self.server_id, "cancelled",
                              error=cancelled_error("running"),
                              outcome=_lean(outcome))
            return
        if outcome is None:
            outcome = ConversionOutcome(passed=False, exit_code=ExitCode.CRASHED,
                                        cause="lost", message=f"the "
                                        f"{self.settings.executor} executor returned "
                                        "without a result")
        if not self.store.has_events(job["id"], running.attempt):
            self.store.add_events(job["id"], running.attempt, from_report(outcome.report))
        finished = self.store.finish(
            job["id"], self.server_id, "passed" if outcome.passed else "failed",
            outcome=outcome.to_json(), summary=summarize(outcome),
            error=None if outcome.passed else error_of(outcome),
            location=(outcome.published[0] if outcome.published else outcome.output))
        if not finished:
            log.warning("job %s was taken over by another server; its result from "
                        "this one is discarded", job["id"])

    def _discard(self, outcome: ConversionOutcome | None) -> None:
        """A cancelled job's result is not kept (a published copy stays: say so)."""
        if outcome is not None and outcome.output and not outcome.published:
            shutil.rmtree(outcome.output, ignore_errors=True)

    def _ingest(self, running: Running) -> None:
        events = running.tail.read()
        if events:
            try:
                self.store.add_events(running.job["id"], running.attempt, events)
            except Exception as exc:
                log.warning("cannot record events of %s: %s", running.job["id"], exc)

    # ------------------------------------------------------------------ monitor

    def _monitor(self) -> None:
        beat = recover = 0.0
        while not self._stop.wait(0.5):
            now = time.monotonic()
            try:
                if now - beat >= 2.0:
                    self.store.heartbeat(self.server_id)
                    beat = now
                with self._lock:
                    running = list(self._running.values())
                for item in running:
                    self._ingest(item)
                for job_id in self.store.cancel_requested(self.server_id):
                    item = next((r for r in running if r.job["id"] == job_id), None)
                    if item is not None and self.local:
                        item.killed = kill_worker(item.output) or item.killed
                if now - recover >= 5.0:
                    self.recover()
                    recover = now
            except Exception as exc:
                log.warning("monitor: %s", exc)

    def recover(self) -> None:
        """Take over the running jobs of servers that are gone."""
        for job in self.store.orphaned(self.server_id, self.settings.lease):
            owner = job["owner"]
            info = job.get("owner_info") or {}
            who = (f"the server running it ({owner}, pid {info.get('pid')} on "
                   f"{info.get('host')})" if info else "the server running it")
            self._ingest(Running(job, Path(job["output"]),
                                 EventTail(events_file(Path(job["output"]))),
                                 job["attempts"]))
            events_file(Path(job["output"])).unlink(missing_ok=True)
            if job["cancel_requested"]:
                self.store.recover(job["id"], owner, "cancelled",
                                   error=cancelled_error("running"))
                continue
            finished = finished_artifact(job)
            if finished is not None:  # it completed just before its server died
                outcome = ConversionOutcome(passed=True, exit_code=ExitCode.OK,
                                            output=job["output"], name=finished["name"],
                                            report=finished)
                if not self.store.has_events(job["id"], job["attempts"]):
                    self.store.add_events(job["id"], job["attempts"], from_report(finished))
                self.store.recover(job["id"], owner, "passed", outcome=outcome.to_json(),
                                   summary=summarize(outcome), location=job["output"])
                continue
            allowed = 1 + self.settings.retries
            if job["attempts"] < allowed:
                if self.store.recover(job["id"], owner, "queued"):
                    self.store.add_events(job["id"], job["attempts"], [{
                        "stage": "interrupted", "target": None, "status": "retry",
                        "detail": f"{who} stopped while it ran; queued again "
                                  f"(attempt {job['attempts'] + 1} of {allowed})"}])
                    self.wake()
                continue
            self.store.recover(job["id"], owner, "interrupted", error={
                "exit_code": int(ExitCode.CRASHED), "cause": "interrupted",
                "stage": None, "hint": "submit it again; if it keeps happening, the "
                "conversion may be what takes the server down (memory)",
                "message": f"{who} stopped while it ran, on attempt {job['attempts']} of "
                           f"{allowed}; not retried again"})


# --------------------------------------------------------------------------- results


def finished_artifact(job: dict[str, Any]) -> dict | None:
    """The report of a complete, passed artifact this job wrote, if one is there."""
    from onnxport.artifact.reading import REPORT, read_json

    output = Path(job["output"])
    if not (output / REPORT).is_file():
        return None
    try:
        report = read_json(output / REPORT, "report")
    except OnnxportError:
        return None
    serve = (report.get("made_by") or {}).get("serve") or {}
    return report if report.get("status") == "passed" and serve.get("job") == job["id"] \
        else None


def summarize(outcome: ConversionOutcome) -> dict[str, Any]:
    """What a client wants to know of a finished job, per target."""
    from onnxport.report.build import final_stage

    report = outcome.report or {}
    targets = {}
    for name, target in (report.get("targets") or {}).items():
        stages = target.get("stages") or []
        final = final_stage(target) if stages and any(
            s.get("status") in ("ok", "failed") for s in stages) else {}
        verification = final.get("verification") or {}
        targets[name] = {
            "status": target.get("status"), "model": target.get("model"),
            "stage": final.get("stage"), "size_bytes": final.get("size_bytes"),
            "max_abs": verification.get("max_abs"),
            "providers": verification.get("providers"),
            "warnings": list(target.get("warnings") or [])[:10]}
    return {"name": outcome.name or report.get("name"), "passed": outcome.passed,
            "seconds": round(outcome.seconds, 3), "peak_rss_bytes": outcome.peak_rss_bytes,
            "exporter": (report.get("export") or {}).get("exporter"),
            "published": list(outcome.published), "targets": targets}


def error_of(outcome: ConversionOutcome) -> dict[str, Any]:
    code = outcome.exit_code
    name = ExitCode(code).name if code in ExitCode._value2member_map_ else None
    return {"exit_code": int(code), "exit_name": name, "cause": outcome.cause or "error",
            "stage": outcome.stage, "message": outcome.message, "hint": outcome.hint}


def _lean(outcome: ConversionOutcome | None) -> dict | None:
    if outcome is None:
        return None
    data = outcome.to_json()
    data["report"] = None
    return data
