"""The audit log: every lifecycle event, hash-chained, outliving Temporal's retention.

Each record is sealed with the hash of the record before it and of all its own
columns (core/audit_chain.py, shared with the PostgreSQL log), so editing,
removing or reordering any record breaks the chain at that point (``check``
names it; with the anchors from Temporal it also sees records cut off at the
end). A SQLite file in the data dir, written only by the audit activity;
appends are idempotent by event id. The chain is in append order; ``export``
reads a time window in event order (time, request id, seq), as
``GET /v1/audit`` and ``jit audit`` stream it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from core.audit import AuditEvent
from core.audit_chain import GENESIS, Broken, ChainedLog, Record, record_hash, seal
from core.private_files import private_file

__all__ = ["GENESIS", "AuditLog", "Broken", "record_hash"]
# An append runs as a local activity, inside the workflow task: a query of that
# request waits behind it (the API's gives up after 5 s). Concurrent appends
# hold the lock for milliseconds; a lock held longer fails the attempt, and the
# workflow raises its alert and retries.
APPEND_WAIT_S = 3
_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    n         INTEGER PRIMARY KEY,
    event_id  TEXT NOT NULL UNIQUE,
    at        TEXT NOT NULL,
    body      TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL,
    v         INTEGER NOT NULL DEFAULT 1
)
"""
# Logs from before hash versions: their records are v1 (core/audit_chain.py).
_ADD_VERSION = "ALTER TABLE audit ADD COLUMN v INTEGER NOT NULL DEFAULT 1"


class AuditLog(ChainedLog):
    TABLE = "audit"

    def __init__(self, path: Path, *, create: bool = True):
        """``create=False`` to read an existing log (export, verify) without writing to it."""
        self.path = path
        if not create:
            return
        private_file(path)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("BEGIN IMMEDIATE")
            db.execute(_SCHEMA)
            if not _has_version(db):
                db.execute(_ADD_VERSION)
            db.execute("COMMIT")

    @contextmanager
    def _connect(self, wait_s: float = 10) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=wait_s, isolation_level=None)
        try:
            yield db
        finally:
            db.close()

    def append(self, events: list[AuditEvent]) -> int:
        """Append in order, skipping events already present; returns how many were new."""
        added = 0
        with self._connect(APPEND_WAIT_S) as db:
            db.execute("BEGIN IMMEDIATE")  # one writer at a time keeps the chain linear
            try:
                last = db.execute("SELECT n, hash FROM audit ORDER BY n DESC LIMIT 1").fetchone()
                n, prev = last if last else (0, GENESIS)
                for event in events:
                    if db.execute("SELECT 1 FROM audit WHERE event_id = ?", (event.event_id,)).fetchone():
                        continue
                    n += 1
                    r = seal(n, event, prev)
                    db.execute(
                        "INSERT INTO audit (n, event_id, at, body, prev_hash, hash, v) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (r.n, r.event_id, event.at.isoformat(), r.body, r.prev_hash, r.hash, r.version),
                    )
                    prev = r.hash
                    added += 1
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return added

    def export(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        requester: str | None = None,
        resource: str | None = None,
    ) -> Iterator[AuditEvent]:
        """Events with ``since <= at < until``, by time, then request id, then seq.

        SQLite sorts (spilling to disk if it must), so the caller streams the
        result whatever the log's size. The connection may be used from any
        thread (a web server iterates in its thread pool), one at a time.
        """
        db = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
        db.create_function("jit_utc", 1, _utc_key, deterministic=True)
        clauses, params = [], []
        if since is not None:
            clauses.append("jit_utc(at) >= ?")
            params.append(_utc_key(since.isoformat()))
        if until is not None:
            clauses.append("jit_utc(at) < ?")
            params.append(_utc_key(until.isoformat()))
        if requester is not None:
            clauses.append("json_extract(body, '$.requester') = ?")
            params.append(requester)
        if resource is not None:
            clauses.append("json_extract(body, '$.resource') = ?")
            params.append(resource)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        try:
            rows = db.execute(
                f"SELECT body FROM audit {where} "
                "ORDER BY jit_utc(at), json_extract(body, '$.request_id'), json_extract(body, '$.seq'), n",
                params,
            )
            for (body,) in rows:
                yield AuditEvent.model_validate_json(body)
        finally:
            db.close()

    def events(self, *, since: datetime | None = None, until: datetime | None = None) -> Iterator[AuditEvent]:
        with self._connect() as db:
            for (body,) in db.execute("SELECT body FROM audit ORDER BY n"):
                event = AuditEvent.model_validate_json(body)
                if (since is None or event.at >= since) and (until is None or event.at < until):
                    yield event

    def records(self) -> Iterator[Record]:
        """Every stored record in chain order, as stored."""
        with self._connect() as db:
            version = "v" if _has_version(db) else "1"
            for n, event_id, at, body, prev_hash, digest, v in db.execute(
                f"SELECT n, event_id, at, body, prev_hash, hash, {version} FROM audit ORDER BY n"  # noqa: S608 - fixed text
            ):
                yield Record(n, event_id, _stored_time(at), body, prev_hash, digest, v)


def _has_version(db: sqlite3.Connection) -> bool:
    return any(row[1] == "v" for row in db.execute("PRAGMA table_info(audit)"))


def _stored_time(at: str) -> datetime:
    """A stored time that does not parse cannot match its hash: the epoch, so the check names the record."""
    try:
        return datetime.fromisoformat(at)
    except (TypeError, ValueError):
        return datetime.fromtimestamp(0, UTC)


def _utc_key(at: str) -> str:
    """An ISO 8601 time as a UTC string that sorts as time does (stored times may differ in form)."""
    moment = datetime.fromisoformat(at)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
