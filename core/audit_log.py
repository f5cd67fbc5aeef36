"""The audit log: every lifecycle event, hash-chained, outliving Temporal's retention.

Each record carries the SHA-256 of the previous record, so editing, removing
or reordering any record breaks the chain at that point (``verify`` names
it). A SQLite file in the data dir, written only by the audit activity;
appends are idempotent by event id. The chain is in append order; ``export``
reads a time window in event order (time, request id, seq), as
``GET /v1/audit`` and ``jit audit`` stream it.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from core.audit import AuditEvent
from core.private_files import private_file

GENESIS = "0" * 64
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
    hash      TEXT NOT NULL
)
"""


def record_hash(prev_hash: str, body: str) -> str:
    return hashlib.sha256(f"{prev_hash}\n{body}".encode()).hexdigest()


@dataclass(frozen=True)
class Broken:
    n: int
    event_id: str
    why: str


class AuditLog:
    def __init__(self, path: Path, *, create: bool = True):
        """``create=False`` to read an existing log (export, verify) without writing to it."""
        self.path = path
        if not create:
            return
        private_file(path)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(_SCHEMA)

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
                last = db.execute("SELECT hash FROM audit ORDER BY n DESC LIMIT 1").fetchone()
                prev = last[0] if last else GENESIS
                for event in events:
                    if db.execute("SELECT 1 FROM audit WHERE event_id = ?", (event.event_id,)).fetchone():
                        continue
                    body = event.model_dump_json()
                    digest = record_hash(prev, body)
                    db.execute(
                        "INSERT INTO audit (event_id, at, body, prev_hash, hash) VALUES (?, ?, ?, ?, ?)",
                        (event.event_id, event.at.isoformat(), body, prev, digest),
                    )
                    prev = digest
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

    def verify(self) -> Broken | None:
        """Recompute the chain; the first record that does not hold, or None."""
        return self.check()[1]

    def check(self) -> tuple[int, Broken | None]:
        """Recompute the chain: (records that hold, the first that does not or None)."""
        prev = GENESIS
        checked = 0
        with self._connect() as db:
            for n, event_id, body, prev_hash, digest in db.execute(
                "SELECT n, event_id, body, prev_hash, hash FROM audit ORDER BY n"
            ):
                if prev_hash != prev:
                    return checked, Broken(n, event_id, "does not follow the record before it")
                if record_hash(prev, body) != digest:
                    return checked, Broken(n, event_id, "content does not match its hash")
                try:
                    json.loads(body)
                except ValueError:
                    return checked, Broken(n, event_id, "content is not JSON")
                prev = digest
                checked += 1
        return checked, None


def _utc_key(at: str) -> str:
    """An ISO 8601 time as a UTC string that sorts as time does (stored times may differ in form)."""
    moment = datetime.fromisoformat(at)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
