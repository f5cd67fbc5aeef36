"""The grant store: which access is live right now, for introspection.

The workflow is the source of truth; this is its projection, written only by
the idempotent grant activities and read by the API on every introspection, so
resource servers never cost a workflow query. Two backends behind one Protocol,
picked by ``open_grant_store`` (core/grant_store.py): a SQLite file in the data
dir (here; WAL: the worker writes while API processes read), or PostgreSQL when
``JIT_DATABASE_URL`` is set (core/grants_pg.py), shared by any number of
processes on any number of machines.

A revoked row is a tombstone: a late retry of the issue activity can never
bring a revoked grant back.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from core.private_files import private_file

_SCHEMA = """
CREATE TABLE IF NOT EXISTS grants (
    request_id   TEXT PRIMARY KEY,
    requester    TEXT NOT NULL,
    resource     TEXT NOT NULL,
    action       TEXT NOT NULL,
    activated_at TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    revoked_at   TEXT
)
"""


@dataclass(frozen=True)
class GrantRow:
    request_id: str
    requester: str
    resource: str
    action: str
    activated_at: datetime
    expires_at: datetime
    revoked_at: datetime | None

    def is_live(self, now: datetime) -> bool:
        return self.revoked_at is None and now < self.expires_at


class GrantRevokedError(Exception):
    """The grant was revoked (or rolled back) before it could be issued."""


class GrantStore(Protocol):
    """What both backends promise; each method is atomic on its own."""

    def record(
        self,
        *,
        request_id: str,
        requester: str,
        resource: str,
        action: str,
        activated_at: datetime,
        expires_at: datetime,
    ) -> GrantRow:
        """Record a grant; a repeat call returns the first one unchanged; GrantRevokedError after a revoke."""
        ...

    def extend(self, request_id: str, expires_at: datetime) -> GrantRow:
        """Move the end of a live grant; GrantRevokedError if it is not live (never issued, or revoked)."""
        ...

    def revoke(self, request_id: str) -> datetime:
        """Mark revoked (first time wins) and return when; leaves a tombstone if never issued."""
        ...

    def count_live(self, now: datetime) -> int: ...

    def lookup(self, request_id: str) -> GrantRow | None:
        """Hot path of introspection: one primary-key read."""
        ...

    def close(self) -> None:
        """Release connections (the PostgreSQL pool); the store is not used after."""
        ...


class SqliteGrantStore:
    def __init__(self, path: Path):
        self._path = path
        private_file(path)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(_SCHEMA)
        # One kept reader per thread: the API reads on its event loop, the
        # worker's tombstone check on its activity threads.
        self._readers = threading.local()

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # A connection per call: activities run on a thread pool.
        db = sqlite3.connect(self._path, timeout=10, isolation_level=None)
        try:
            yield db
        finally:
            db.close()

    def record(
        self,
        *,
        request_id: str,
        requester: str,
        resource: str,
        action: str,
        activated_at: datetime,
        expires_at: datetime,
    ) -> GrantRow:
        """Record a grant; a repeat call returns the first one unchanged."""
        with self._connect() as db:
            db.execute(
                "INSERT INTO grants VALUES (?, ?, ?, ?, ?, ?, NULL) ON CONFLICT DO NOTHING",
                (request_id, requester, resource, action, _ts(activated_at), _ts(expires_at)),
            )
            row = _fetch(db, request_id)
        assert row is not None
        if row.revoked_at is not None:
            raise GrantRevokedError(f"grant {request_id} was revoked before it was issued")
        return row

    def extend(self, request_id: str, expires_at: datetime) -> GrantRow:
        with self._connect() as db:
            db.execute(
                "UPDATE grants SET expires_at = ? WHERE request_id = ? AND revoked_at IS NULL",
                (_ts(expires_at), request_id),
            )
            row = _fetch(db, request_id)
        if row is None or row.revoked_at is not None:
            raise GrantRevokedError(f"grant {request_id} is not live")
        return row

    def revoke(self, request_id: str) -> datetime:
        """Mark revoked (first time wins); leaves a tombstone if never issued."""
        now = _ts(datetime.now(UTC))
        with self._connect() as db:
            db.execute(
                "INSERT INTO grants VALUES (?, '', '', '', ?, ?, ?) "
                "ON CONFLICT (request_id) DO UPDATE SET revoked_at = coalesce(revoked_at, excluded.revoked_at)",
                (request_id, now, now, now),
            )
            row = _fetch(db, request_id)
        assert row is not None and row.revoked_at is not None
        return row.revoked_at

    def count_live(self, now: datetime) -> int:
        """How many grants are live at ``now`` (the worker's ``jit_grants_active`` gauge)."""
        # Timestamps are stored as UTC ISO strings (_ts), which sort as the instants do.
        with self._connect() as db:
            (count,) = db.execute(
                "SELECT count(*) FROM grants WHERE revoked_at IS NULL AND expires_at > ?", (_ts(now),)
            ).fetchone()
        return int(count)

    def lookup(self, request_id: str) -> GrantRow | None:
        """Hot path of introspection: one primary-key read on a kept connection."""
        reader = getattr(self._readers, "db", None)
        if reader is None:
            reader = self._readers.db = sqlite3.connect(self._path, isolation_level=None)
        return _fetch(reader, request_id)

    def close(self) -> None:
        # Connections are per call, and a thread's kept reader goes with its thread.
        pass


def _ts(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def _fetch(db: sqlite3.Connection, request_id: str) -> GrantRow | None:
    found = db.execute(
        "SELECT request_id, requester, resource, action, activated_at, expires_at, revoked_at "
        "FROM grants WHERE request_id = ?",
        (request_id,),
    ).fetchone()
    if found is None:
        return None
    rid, requester, resource, action, activated, expires, revoked = found
    return GrantRow(
        rid,
        requester,
        resource,
        action,
        datetime.fromisoformat(activated),
        datetime.fromisoformat(expires),
        datetime.fromisoformat(revoked) if revoked else None,
    )
