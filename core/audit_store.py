"""Which audit log: PostgreSQL when ``JIT_AUDIT_LOG_DSN`` or ``JIT_DATABASE_URL`` is set, else the SQLite file in the data dir.

Both stores sit behind one Protocol and share one chain (core/audit_chain.py):
how a record is sealed and how the chain and its anchors are checked is
written once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Protocol

import psycopg

from core.audit import AuditEvent
from core.audit_chain import Anchor, Broken, ChainHead, Record
from core.audit_log import AuditLog
from core.audit_log_pg import PostgresAuditLog
from core.settings import Settings

# What reading or writing either log may raise when its storage is unavailable.
STORE_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, psycopg.Error)


class AuditStore(Protocol):
    def append(self, events: list[AuditEvent]) -> int: ...

    def export(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        requester: str | None = None,
        resource: str | None = None,
    ) -> Iterator[AuditEvent]: ...

    def events(self, *, since: datetime | None = None, until: datetime | None = None) -> Iterator[AuditEvent]: ...

    def records(self) -> Iterator[Record]: ...

    def head(self) -> ChainHead: ...

    def verify(self, anchors: Sequence[Anchor] = ()) -> Broken | None: ...

    def check(self, anchors: Sequence[Anchor] = ()) -> tuple[int, Broken | None]: ...


def open_audit_log(settings: Settings, *, create: bool = True) -> AuditStore:
    """``create=False`` to read an existing log without writing to it (no table, no file made)."""
    if settings.audit_dsn:
        return PostgresAuditLog(settings.audit_dsn, create=create)
    return AuditLog(settings.audit_log_path, create=create)


def describe(settings: Settings) -> str:
    """Where the log is, for messages: never the DSN (it holds a password)."""
    if settings.audit_log_dsn:
        return "the PostgreSQL audit log (JIT_AUDIT_LOG_DSN)"
    if settings.database_url:
        return "the PostgreSQL audit log (JIT_DATABASE_URL)"
    return f"the audit log {settings.audit_log_path}"
