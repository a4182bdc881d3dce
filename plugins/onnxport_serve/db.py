"""The service's SQLite database: one file holds the jobs, their stage events, the
servers sharing it, and the tokens. The schema is versioned (`meta.schema_version`).

SQLite in WAL mode lets several `onnxport serve` processes on ONE host share the file
(each write is a short `BEGIN IMMEDIATE` transaction; readers never block). Across
hosts it is not safe (file locking over network file systems is unreliable): run one
host, or put the servers on one host with Ray behind them (docs/serve.md).
"""

from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from onnxport.errors import BadInput

SCHEMA_VERSION = 1
DB_FILE = "jobs.db"

_SCHEMA_1 = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    model TEXT NOT NULL,
    kind TEXT NOT NULL,                 -- named | upload
    body TEXT NOT NULL,                 -- the API request as the client sent it
    job TEXT NOT NULL,                  -- what the executor gets: request, timeout, publish
    output TEXT NOT NULL,               -- where the worker writes the artifact
    state TEXT NOT NULL,          -- queued running passed failed cancelled interrupted
    attempts INTEGER NOT NULL DEFAULT 0,
    principal TEXT NOT NULL,            -- the token id that submitted it, or "anonymous"
    idem_key TEXT,
    idem_hash TEXT,
    owner TEXT,                         -- the server running it
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    outcome TEXT,                       -- ConversionOutcome as JSON
    summary TEXT,                       -- per-target result as JSON
    error TEXT,                         -- {exit_code, cause, message, hint, stage}
    location TEXT                       -- the artifact directory or published URI
);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_idem ON jobs (principal, idem_key)
    WHERE idem_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, seq);
CREATE INDEX IF NOT EXISTS jobs_model ON jobs (model, state, finished);
CREATE TABLE IF NOT EXISTS events (
    job_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    at REAL NOT NULL,
    attempt INTEGER NOT NULL,
    stage TEXT NOT NULL,
    target TEXT,
    status TEXT NOT NULL,
    seconds REAL NOT NULL DEFAULT 0,
    detail TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (job_id, seq)
);
CREATE TABLE IF NOT EXISTS servers (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    address TEXT NOT NULL,
    started REAL NOT NULL,
    heartbeat REAL NOT NULL,
    stopped REAL
);
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,          -- sha256 of the token (not the token itself)
    scopes TEXT NOT NULL,               -- comma-separated: read, submit
    created REAL NOT NULL,
    revoked REAL,
    last_used REAL
);
"""


class Database:
    """The database file, one connection per thread."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._local = threading.local()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise BadInput(f"the job database {self.path} cannot be used ({exc})",
                           "give --state a directory of its own that this user can "
                           "write") from exc

    def connection(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                 check_same_thread=False)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at each checkpoint
            db.execute("PRAGMA busy_timeout=30000")
            self._local.db = db
        return db

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction, taken at once (BEGIN IMMEDIATE) so that two servers
        never both claim the same job."""
        db = self.connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def read(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        return self.connection().execute(sql, args).fetchall()

    def _migrate(self) -> None:
        with self.transaction() as db:
            has_meta = db.execute("SELECT name FROM sqlite_master WHERE type='table' "
                                  "AND name='meta'").fetchone()
            version = 0
            if has_meta:
                row = db.execute("SELECT value FROM meta WHERE key='schema_version'"
                                 ).fetchone()
                version = int(row["value"]) if row else 0
            if version > SCHEMA_VERSION:
                raise BadInput(f"the job database {self.path} has schema version "
                               f"{version}, newer than this onnxport's "
                               f"({SCHEMA_VERSION})", "upgrade onnxport, or give "
                               "another --state directory")
            if version < 1:
                for statement in _SCHEMA_1.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)",
                           (str(SCHEMA_VERSION),))
            # later versions: `if version < 2: ...`, each step in this transaction

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None
