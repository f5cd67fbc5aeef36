"""The audit log on PostgreSQL: the same hash chain as core/audit_log.py, for shared or replicated storage.

Picked by ``JIT_AUDIT_LOG_DSN`` (core/audit_store.py). One table, ``jit_audit``;
an append holds ``LOCK TABLE ... IN EXCLUSIVE MODE`` for its transaction, so
any number of workers append one at a time and the chain stays linear, while
readers (export, verify) are never blocked. Records are sealed and checked by
the same code as the SQLite log's (core/audit_chain.py), so ``verify`` means the
same thing.
The DSN holds a password: it is never logged nor shown (not even in ``repr``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg

from core.audit import AuditEvent
from core.audit_chain import GENESIS, ChainedLog, Record, seal

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jit_audit (
    n         bigserial PRIMARY KEY,
    event_id  text NOT NULL UNIQUE,
    at        timestamptz NOT NULL,
    body      text NOT NULL,
    prev_hash text NOT NULL,
    hash      text NOT NULL,
    v         integer NOT NULL DEFAULT 1
)
"""
# Tables from before hash versions: their records are v1 (core/audit_chain.py).
_ADD_VERSION = "ALTER TABLE jit_audit ADD COLUMN IF NOT EXISTS v integer NOT NULL DEFAULT 1"
# Two workers starting together must not both create the table (CREATE TABLE IF NOT EXISTS races).
_SCHEMA_LOCK = "SELECT pg_advisory_xact_lock(hashtext('jit_audit schema'))"


def _utc(moment: datetime) -> datetime:
    """As the SQLite log reads times: a naive time is UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


# An append runs as a local activity, inside the workflow task: a query of that
# request waits behind it (the API's gives up after 5 s). A store that is down
# fails the attempt quickly instead; the workflow raises its alert and retries.
APPEND_WAIT_S = 3


class PostgresAuditLog(ChainedLog):
    TABLE = "jit_audit"

    def __init__(self, dsn: str, *, create: bool = True):
        """``create=False`` to read an existing log (export, verify) without writing to it."""
        self._dsn = dsn
        if not create:
            return
        with self._connect() as db, db.transaction():
            db.execute(_SCHEMA_LOCK)
            db.execute(_SCHEMA)
            db.execute(_ADD_VERSION)

    def __repr__(self) -> str:
        return "PostgresAuditLog(<dsn hidden>)"

    def _connect(self, wait_s: int = 10) -> psycopg.Connection:
        return psycopg.connect(self._dsn, autocommit=True, connect_timeout=wait_s)

    def append(self, events: list[AuditEvent]) -> int:
        """Append in order, skipping events already present; returns how many were new."""
        added = 0
        with self._connect(APPEND_WAIT_S) as db, db.transaction():
            db.execute(f"SET LOCAL lock_timeout = '{APPEND_WAIT_S}s'")
            db.execute("LOCK TABLE jit_audit IN EXCLUSIVE MODE")  # one writer at a time keeps the chain linear
            last = db.execute("SELECT hash FROM jit_audit ORDER BY n DESC LIMIT 1").fetchone()
            prev = last[0] if last else GENESIS
            for event in events:
                if db.execute("SELECT 1 FROM jit_audit WHERE event_id = %s", (event.event_id,)).fetchone():
                    continue
                # The position is sealed into the record, so it is drawn before the insert (from the
                # column's own sequence: under the table lock, sequence order is chain order).
                n = db.execute("SELECT nextval(pg_get_serial_sequence('jit_audit', 'n'))").fetchone()
                assert n is not None
                r = seal(n[0], event, prev)
                db.execute(
                    "INSERT INTO jit_audit (n, event_id, at, body, prev_hash, hash, v) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    (r.n, r.event_id, _utc(event.at), r.body, r.prev_hash, r.hash, r.version),
                )
                prev = r.hash
                added += 1
        return added

    def export(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        requester: str | None = None,
        resource: str | None = None,
    ) -> Iterator[AuditEvent]:
        """Events with ``since <= at < until``, by time, then request id, then seq (as the SQLite log).

        A server-side cursor: the caller streams the result whatever the log's
        size. Request ids sort bytewise (``COLLATE "C"``) and seq as a number,
        as SQLite's ``json_extract`` does.
        """
        clauses: list[str] = []
        params: list[object] = []
        if since is not None:
            clauses.append("at >= %s")
            params.append(_utc(since))
        if until is not None:
            clauses.append("at < %s")
            params.append(_utc(until))
        if requester is not None:
            clauses.append("body::jsonb ->> 'requester' = %s")
            params.append(requester)
        if resource is not None:
            clauses.append("body::jsonb ->> 'resource' = %s")
            params.append(resource)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        query = (
            f"SELECT body FROM jit_audit {where} "  # noqa: S608 - only fixed clauses; values are parameters
            "ORDER BY at, (body::jsonb ->> 'request_id') COLLATE \"C\", (body::jsonb ->> 'seq')::bigint, n"
        )
        with psycopg.connect(self._dsn, connect_timeout=10) as db, db.cursor(name="jit_audit_export") as cur:
            cur.execute(query, params)
            for (body,) in cur:
                yield AuditEvent.model_validate_json(body)

    def events(self, *, since: datetime | None = None, until: datetime | None = None) -> Iterator[AuditEvent]:
        """In append order."""
        with psycopg.connect(self._dsn, connect_timeout=10) as db, db.cursor(name="jit_audit_events") as cur:
            cur.execute("SELECT body FROM jit_audit ORDER BY n")
            for (body,) in cur:
                event = AuditEvent.model_validate_json(body)
                if (since is None or event.at >= since) and (until is None or event.at < until):
                    yield event

    def records(self) -> Iterator[Record]:
        """Every stored record in chain order, as stored."""
        with psycopg.connect(self._dsn, connect_timeout=10) as db:
            has_version = db.execute(
                "SELECT 1 FROM information_schema.columns WHERE table_name = 'jit_audit' AND column_name = 'v'"
            ).fetchone()
            version = "v" if has_version else "1"
            with db.cursor(name="jit_audit_check") as cur:
                cur.execute(f"SELECT n, event_id, at, body, prev_hash, hash, {version} FROM jit_audit ORDER BY n")  # noqa: S608 - fixed text
                for n, event_id, at, body, prev_hash, digest, v in cur:
                    yield Record(n, event_id, at, body, prev_hash, digest, v)
