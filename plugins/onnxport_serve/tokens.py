"""Bearer tokens: created by `onnxport token create`, shown once, kept as sha256 only.

A token carries scopes: `read` (jobs, models, artifacts, reports, metrics) and `submit`
(submit and cancel jobs). Once any token has been created in a database, the service
behind it requires one on every request but the health checks and the API docs.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from onnxport.errors import BadInput

from .db import Database

SCOPES = ("read", "submit")
PREFIX = "onxp_"


@dataclass(frozen=True)
class TokenInfo:
    id: str
    name: str
    scopes: tuple[str, ...]
    created: float
    revoked: float | None = None
    last_used: float | None = None


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create(db: Database, scopes: list[str], name: str = "") -> tuple[str, TokenInfo]:
    """A new token (the only time it exists in clear) and what is stored about it."""
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise BadInput(f"scope {unknown[0]!r} is unknown" if unknown else
                       "a token needs at least one --scope",
                       "scopes: " + ", ".join(SCOPES))
    token = PREFIX + secrets.token_urlsafe(32)
    info = TokenInfo(id="t-" + secrets.token_hex(4), name=name or "",
                     scopes=tuple(s for s in SCOPES if s in scopes), created=time.time())
    with db.transaction() as conn:
        conn.execute("INSERT INTO tokens (id, name, hash, scopes, created) "
                     "VALUES (?, ?, ?, ?, ?)",
                     (info.id, info.name, digest(token), ",".join(info.scopes),
                      info.created))
    return token, info


def listed(db: Database) -> list[TokenInfo]:
    return [_info(row) for row in db.read("SELECT * FROM tokens ORDER BY created")]


def revoke(db: Database, token_id: str) -> TokenInfo:
    with db.transaction() as conn:
        done = conn.execute("UPDATE tokens SET revoked=? WHERE id=? AND revoked IS NULL",
                            (time.time(), token_id)).rowcount
    rows = db.read("SELECT * FROM tokens WHERE id=?", (token_id,))
    if not rows:
        raise BadInput(f"no token {token_id!r}", "`onnxport token list` shows the ids")
    if not done:
        raise BadInput(f"token {token_id} was already revoked")
    return _info(rows[0])


def required(db: Database) -> bool:
    """Whether the service asks for tokens: once one was ever created (revoking every
    token locks the service; it never opens it again)."""
    return bool(db.read("SELECT 1 FROM tokens LIMIT 1"))


def usable(db: Database) -> int:
    return db.read("SELECT COUNT(*) AS n FROM tokens WHERE revoked IS NULL")[0]["n"]


def check(db: Database, token: str) -> TokenInfo | None:
    """The live token `token` is, or None."""
    rows = db.read("SELECT * FROM tokens WHERE hash=? AND revoked IS NULL",
                   (digest(token),))
    if not rows:
        return None
    info = _info(rows[0])
    if info.last_used is None or time.time() - info.last_used > 60:
        try:
            with db.transaction() as conn:
                conn.execute("UPDATE tokens SET last_used=? WHERE id=?",
                             (time.time(), info.id))
        except Exception:  # a busy database must not refuse a valid token
            pass
    return info


def _info(row) -> TokenInfo:
    return TokenInfo(id=row["id"], name=row["name"], scopes=tuple(row["scopes"].split(",")),
                     created=row["created"], revoked=row["revoked"],
                     last_used=row["last_used"])
