"""The jobs table: every accepted conversion is a row, and every change of state is one
short transaction, so a server that dies loses nothing it had acknowledged.

States: queued -> running -> passed | failed, and cancelled (from queued or running)
or interrupted (the server running it died, and it may not be retried). A row is
only finished by the server that owns it (`owner`), so a job recovered by another
server is never recorded twice.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
import uuid
from dataclasses import dataclass
from typing import Any, Iterable

from .db import Database

STATES = ("queued", "running", "passed", "failed", "cancelled", "interrupted")
FINAL = ("passed", "failed", "cancelled", "interrupted")


class QueueFull(Exception):
    def __init__(self, queued: int, retry_after: int):
        super().__init__(f"{queued} jobs are queued")
        self.queued = queued
        self.retry_after = retry_after


class IdempotencyConflict(Exception):
    """The key was used before for a different request."""

    def __init__(self, job_id: str):
        super().__init__(job_id)
        self.job_id = job_id


class NotCancellable(Exception):
    def __init__(self, state: str):
        super().__init__(state)
        self.state = state


@dataclass
class NewJob:
    id: str
    model: str
    kind: str
    body: dict[str, Any]
    job: dict[str, Any]
    output: str
    principal: str
    idem_key: str | None = None
    idem_hash: str | None = None


def new_id() -> str:
    return uuid.uuid4().hex


class JobStore:
    def __init__(self, db: Database):
        self.db = db

    # ------------------------------------------------------------------ submitting

    def submit(self, new: NewJob, queue_limit: int, slots: int) -> tuple[dict, bool]:
        """Insert the job, or return the job the same idempotency key made (created
        False). Raises QueueFull, IdempotencyConflict."""
        try:
            with self.db.transaction() as conn:
                if new.idem_key is not None:
                    existing = conn.execute(
                        "SELECT * FROM jobs WHERE principal=? AND idem_key=?",
                        (new.principal, new.idem_key)).fetchone()
                    if existing is not None:
                        if existing["idem_hash"] != new.idem_hash:
                            raise IdempotencyConflict(existing["id"])
                        return _job(existing), False
                queued = conn.execute("SELECT COUNT(*) FROM jobs WHERE state='queued'"
                                      ).fetchone()[0]
                if queued >= queue_limit:
                    raise QueueFull(queued, self._retry_after(conn, queued, slots))
                conn.execute(
                    "INSERT INTO jobs (id, model, kind, body, job, output, state, "
                    "principal, idem_key, idem_hash, created) "
                    "VALUES (?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?)",
                    (new.id, new.model, new.kind, json.dumps(new.body),
                     json.dumps(new.job), new.output, new.principal,
                     new.idem_key, new.idem_hash, time.time()))
        except sqlite3.IntegrityError:  # the same key, submitted at the same moment
            existing = self.db.read("SELECT * FROM jobs WHERE principal=? AND idem_key=?",
                                    (new.principal, new.idem_key))
            if not existing:
                raise
            if existing[0]["idem_hash"] != new.idem_hash:
                raise IdempotencyConflict(existing[0]["id"]) from None
            return _job(existing[0]), False
        return self.get(new.id), True

    def retry_after(self, queued: int, slots: int) -> int:
        return self._retry_after(self.db.connection(), queued, slots)

    @staticmethod
    def _retry_after(conn, queued: int, slots: int) -> int:
        """Seconds until a place in the queue is likely free (the next job starts): the
        median of recent durations spread over the slots (1 s to 10 min)."""
        rows = conn.execute("SELECT finished - started FROM jobs WHERE state IN "
                            "('passed','failed') AND started IS NOT NULL ORDER BY seq "
                            "DESC LIMIT 50").fetchall()
        durations = sorted(r[0] for r in rows if r[0] is not None)
        typical = durations[len(durations) // 2] if durations else 10.0
        return int(min(600, max(1, typical / max(1, slots))))

    # ------------------------------------------------------------------ reading

    def get(self, job_id: str) -> dict | None:
        rows = self.db.read("SELECT * FROM jobs WHERE id=?", (job_id,))
        return _job(rows[0]) if rows else None

    def events(self, job_id: str) -> list[dict]:
        return [dict(r) for r in self.db.read(
            "SELECT at, attempt, stage, target, status, seconds, detail FROM events "
            "WHERE job_id=? ORDER BY seq", (job_id,))]

    def listed(self, *, state: str | None = None, model: str | None = None,
               limit: int = 50) -> list[dict]:
        where, args = [], []
        if state:
            where.append("state=?")
            args.append(state)
        if model:
            where.append("model=?")
            args.append(model)
        sql = "SELECT * FROM jobs" + (" WHERE " + " AND ".join(where) if where else "")
        return [_job(r) for r in self.db.read(sql + " ORDER BY seq DESC LIMIT ?",
                                              (*args, limit))]

    def latest_passed(self, model: str, limit: int = 50) -> list[dict]:
        return [_job(r) for r in self.db.read(
            "SELECT * FROM jobs WHERE model=? AND state='passed' ORDER BY finished DESC "
            "LIMIT ?", (model, limit))]

    def known_model(self, model: str) -> bool:
        return bool(self.db.read("SELECT 1 FROM jobs WHERE model=? LIMIT 1", (model,)))

    def counts(self) -> dict[str, int]:
        counts = {state: 0 for state in STATES}
        for row in self.db.read("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state"):
            counts[row["state"]] = row["n"]
        return counts

    def duration_histogram(self, bounds) -> dict[str, tuple[int, float, list[int]]]:
        """Per final state (passed, failed): count, total seconds, and the cumulative
        count at or below each bound, over every finished job in the database."""
        sums = ", ".join(f"SUM(finished - started <= {float(b)})" for b in bounds)
        result = {"passed": (0, 0.0, [0] * len(bounds)),
                  "failed": (0, 0.0, [0] * len(bounds))}
        for row in self.db.read(
                f"SELECT state, COUNT(*), COALESCE(SUM(finished - started), 0), {sums} "
                "FROM jobs WHERE state IN ('passed', 'failed') AND started IS NOT NULL "
                "AND finished IS NOT NULL GROUP BY state"):
            values = tuple(row)
            result[values[0]] = (values[1], values[2], [v or 0 for v in values[3:]])
        return result

    def queued_count(self) -> int:
        return self.db.read("SELECT COUNT(*) AS n FROM jobs WHERE state='queued'")[0]["n"]

    # ------------------------------------------------------------------ running

    def claim(self, server: str) -> dict | None:
        """The oldest queued job, now running and owned by `server`."""
        with self.db.transaction() as conn:
            row = conn.execute("SELECT id FROM jobs WHERE state='queued' ORDER BY seq "
                               "LIMIT 1").fetchone()
            if row is None:
                return None
            conn.execute("UPDATE jobs SET state='running', owner=?, started=?, "
                         "attempts=attempts+1 WHERE id=? AND state='queued'",
                         (server, time.time(), row["id"]))
        return self.get(row["id"])

    def add_events(self, job_id: str, attempt: int, events: Iterable[dict]) -> None:
        events = list(events)
        if not events:
            return
        with self.db.transaction() as conn:
            last = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events WHERE job_id=?",
                                (job_id,)).fetchone()[0]
            for offset, event in enumerate(events, 1):
                conn.execute(
                    "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (job_id, last + offset, event.get("at", time.time()), attempt,
                     str(event["stage"]), event.get("target"), str(event["status"]),
                     float(event.get("seconds") or 0.0), str(event.get("detail") or "")))

    def has_events(self, job_id: str, attempt: int) -> bool:
        return bool(self.db.read("SELECT 1 FROM events WHERE job_id=? AND attempt=? "
                                 "LIMIT 1", (job_id, attempt)))

    def finish(self, job_id: str, server: str, state: str, *,
               outcome: dict | None = None, summary: dict | None = None,
               error: dict | None = None, location: str | None = None) -> bool:
        """Record the end of a job this server runs; False when it no longer owns it."""
        with self.db.transaction() as conn:
            return conn.execute(
                "UPDATE jobs SET state=?, finished=?, outcome=?, summary=?, error=?, "
                "location=? WHERE id=? AND owner=? AND state='running'",
                (state, time.time(), _dump(outcome), _dump(summary), _dump(error),
                 location, job_id, server)).rowcount == 1

    def requeue(self, job_id: str, server: str, *, refund: bool) -> bool:
        """Back to the queue (a graceful stop): `refund` does not count the attempt."""
        with self.db.transaction() as conn:
            return conn.execute(
                "UPDATE jobs SET state='queued', owner=NULL, started=NULL, attempts="
                "attempts - ? WHERE id=? AND owner=? AND state='running'",
                (1 if refund else 0, job_id, server)).rowcount == 1

    def cancel(self, job_id: str) -> str:
        """Cancel a queued job at once; ask the owner of a running one to stop it.
        Returns the state after the call. Raises NotCancellable for an ended job."""
        with self.db.transaction() as conn:
            row = conn.execute("SELECT state FROM jobs WHERE id=?", (job_id,)).fetchone()
            if row is None:
                raise KeyError(job_id)
            if row["state"] == "queued":
                conn.execute("UPDATE jobs SET state='cancelled', finished=?, "
                             "cancel_requested=1, error=? WHERE id=?",
                             (time.time(), _dump(_cancelled("queued")), job_id))
                return "cancelled"
            if row["state"] == "running":
                conn.execute("UPDATE jobs SET cancel_requested=1 WHERE id=?", (job_id,))
                return "running"
        raise NotCancellable(row["state"])

    def cancel_requested(self, server: str) -> list[str]:
        return [r["id"] for r in self.db.read(
            "SELECT id FROM jobs WHERE owner=? AND state='running' AND cancel_requested=1",
            (server,))]

    def running_on(self, server: str) -> list[dict]:
        return [_job(r) for r in self.db.read(
            "SELECT * FROM jobs WHERE owner=? AND state='running'", (server,))]

    # ------------------------------------------------------------------ servers

    def register_server(self, server: str, address: str) -> None:
        now = time.time()
        with self.db.transaction() as conn:
            conn.execute("INSERT INTO servers VALUES (?, ?, ?, ?, ?, ?, NULL)",
                         (server, socket.gethostname(), os.getpid(), address, now, now))

    def heartbeat(self, server: str) -> None:
        with self.db.transaction() as conn:
            conn.execute("UPDATE servers SET heartbeat=? WHERE id=?", (time.time(), server))

    def server_stopped(self, server: str) -> None:
        with self.db.transaction() as conn:
            conn.execute("UPDATE servers SET stopped=?, heartbeat=? WHERE id=?",
                         (time.time(), time.time(), server))

    def orphaned(self, me: str, lease: float) -> list[dict]:
        """Running jobs whose server is gone: stopped, a process of this host that no
        longer exists, or a server elsewhere silent for `lease` seconds."""
        host = socket.gethostname()
        servers = {r["id"]: r for r in self.db.read("SELECT * FROM servers")}
        orphans = []
        for row in self.db.read("SELECT * FROM jobs WHERE state='running'"):
            owner = servers.get(row["owner"])
            if row["owner"] == me:
                continue
            if owner is None or owner["stopped"] is not None:
                gone = True
            elif owner["host"] == host:  # a busy server may beat late: ask the kernel
                gone = not _alive(owner["pid"])
            else:
                gone = time.time() - owner["heartbeat"] > lease
            if gone:
                orphans.append({**_job(row), "owner_info": dict(owner) if owner else None})
        return orphans

    def recover(self, job_id: str, owner: str | None, state: str, *,
                error: dict | None = None, outcome: dict | None = None,
                summary: dict | None = None, location: str | None = None) -> bool:
        """Take over a running job of a dead server: back to `queued`, or ended."""
        with self.db.transaction() as conn:
            if state == "queued":
                sql = ("UPDATE jobs SET state='queued', owner=NULL, started=NULL "
                       "WHERE id=? AND state='running' AND owner IS ?")
                return conn.execute(sql, (job_id, owner)).rowcount == 1
            return conn.execute(
                "UPDATE jobs SET state=?, finished=?, error=?, outcome=?, summary=?, "
                "location=? WHERE id=? AND state='running' AND owner IS ?",
                (state, time.time(), _dump(error), _dump(outcome), _dump(summary),
                 location, job_id, owner)).rowcount == 1


def _cancelled(when: str) -> dict:
    return {"exit_code": None, "cause": "cancelled", "stage": None,
            "message": f"cancelled by a client while {when}", "hint": None}


def cancelled_error(when: str) -> dict:
    return _cancelled(when)


def _alive(pid: int) -> bool:
    """Whether process `pid` of this host still runs (a zombie does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return True


def _dump(value: Any) -> str | None:
    return None if value is None else json.dumps(value, default=str)


def _job(row: sqlite3.Row) -> dict:
    job = dict(row)
    for key in ("body", "job", "outcome", "summary", "error"):
        if job.get(key) is not None:
            job[key] = json.loads(job[key])
    job["cancel_requested"] = bool(job["cancel_requested"])
    return job
