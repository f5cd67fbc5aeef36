"""The grant store on PostgreSQL (``JIT_DATABASE_URL``): the same rules as the SQLite store in core/grants.py.

Shared by every worker and API process, wherever they run. One table,
``jit_grants``, created by core/pg_migrations.py at start-up. Each method is one
or two statements on a pooled connection in autocommit: the upsert with
``coalesce`` keeps the first revoke time, and ``ON CONFLICT DO NOTHING`` keeps
a revoked row a tombstone that a late ``record`` cannot bring back.

Every method is idempotent, so a call that meets a connection the server
dropped (a PostgreSQL restart, a failover) is run once more on a fresh one.
The URL holds a password: it is never logged nor shown (not even in ``repr``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

import psycopg
from psycopg_pool import ConnectionPool

from core.grants import GrantRevokedError, GrantRow
from core.pg_migrations import migrate

_MIGRATIONS = [
    """
    CREATE TABLE jit_grants (
        request_id   text PRIMARY KEY,
        requester    text NOT NULL,
        resource     text NOT NULL,
        action       text NOT NULL,
        activated_at timestamptz NOT NULL,
        expires_at   timestamptz NOT NULL,
        revoked_at   timestamptz
    )
    """,
]
_COLUMNS = "request_id, requester, resource, action, activated_at, expires_at, revoked_at"

# Connections per process. The API reads on its event loop (one at a time) and the
# worker writes from its activity threads (16): more would wait on PostgreSQL's locks.
POOL_MAX = 8
# A grant write runs inside the workflow's task (a local activity) and introspection
# answers resource servers: a database that is down fails fast, the caller retries.
WAIT_S = 5

T = TypeVar("T")


class PostgresGrantStore:
    def __init__(self, url: str, *, pool_max: int = POOL_MAX):
        with psycopg.connect(url, autocommit=True, connect_timeout=WAIT_S) as db:
            migrate(db, "grants", _MIGRATIONS)
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_max,
            timeout=WAIT_S,
            kwargs={"autocommit": True, "connect_timeout": WAIT_S},
            name="jit-grants",
            open=True,
        )

    def __repr__(self) -> str:
        return "PostgresGrantStore(<url hidden>)"

    def close(self) -> None:
        self._pool.close()

    def _run(self, work: Callable[[psycopg.Connection], T]) -> T:
        try:
            with self._pool.connection() as db:
                return work(db)
        except psycopg.OperationalError:
            # The pool hands out a connection it last saw healthy; the server may have
            # dropped it (and its idle siblings) since. Checking every connection on
            # every call would double the cost of introspection; after a failure, the
            # pool checks its idle ones and the retry gets a live one.
            self._pool.check()
            with self._pool.connection() as db:
                return work(db)

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

        def work(db: psycopg.Connection) -> GrantRow | None:
            db.execute(
                f"INSERT INTO jit_grants ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, NULL) "  # noqa: S608 - fixed text
                "ON CONFLICT (request_id) DO NOTHING",
                (request_id, requester, resource, action, activated_at, expires_at),
            )
            return _fetch(db, request_id)

        row = self._run(work)
        assert row is not None
        if row.revoked_at is not None:
            raise GrantRevokedError(f"grant {request_id} was revoked before it was issued")
        return row

    def extend(self, request_id: str, expires_at: datetime) -> GrantRow:
        def work(db: psycopg.Connection) -> GrantRow | None:
            db.execute(
                "UPDATE jit_grants SET expires_at = %s WHERE request_id = %s AND revoked_at IS NULL",
                (expires_at, request_id),
            )
            return _fetch(db, request_id)

        row = self._run(work)
        if row is None or row.revoked_at is not None:
            raise GrantRevokedError(f"grant {request_id} is not live")
        return row

    def revoke(self, request_id: str) -> datetime:
        """Mark revoked (first time wins); leaves a tombstone if never issued."""
        now = datetime.now(UTC)

        def work(db: psycopg.Connection) -> tuple[datetime] | None:
            return db.execute(
                f"INSERT INTO jit_grants ({_COLUMNS}) VALUES (%s, '', '', '', %s, %s, %s) "  # noqa: S608 - fixed text
                "ON CONFLICT (request_id) DO UPDATE SET revoked_at = coalesce(jit_grants.revoked_at, excluded.revoked_at) "
                "RETURNING revoked_at",
                (request_id, now, now, now),
            ).fetchone()

        row = self._run(work)
        assert row is not None
        return row[0].astimezone(UTC)

    def count_live(self, now: datetime) -> int:
        """How many grants are live at ``now`` (the worker's ``jit_grants_active`` gauge)."""

        def work(db: psycopg.Connection) -> tuple[int] | None:
            return db.execute(
                "SELECT count(*) FROM jit_grants WHERE revoked_at IS NULL AND expires_at > %s", (now,)
            ).fetchone()

        row = self._run(work)
        assert row is not None
        return int(row[0])

    def lookup(self, request_id: str) -> GrantRow | None:
        """Hot path of introspection: one primary-key read (prepared by psycopg after a few calls)."""
        return self._run(lambda db: _fetch(db, request_id))


def _fetch(db: psycopg.Connection, request_id: str) -> GrantRow | None:
    found = db.execute(f"SELECT {_COLUMNS} FROM jit_grants WHERE request_id = %s", (request_id,)).fetchone()  # noqa: S608 - fixed text
    if found is None:
        return None
    rid, requester, resource, action, activated, expires, revoked = found
    # As the SQLite store reads them: aware, in UTC (the session's time zone may be any).
    return GrantRow(
        rid,
        requester,
        resource,
        action,
        activated.astimezone(UTC),
        expires.astimezone(UTC),
        revoked.astimezone(UTC) if revoked is not None else None,
    )
