"""Which audit log: PostgreSQL when ``JIT_AUDIT_LOG_DSN`` is set, else the SQLite file in the data dir."""

from __future__ import annotations

import sqlite3

import psycopg

from core.audit_log import AuditLog
from core.audit_log_pg import PostgresAuditLog
from core.settings import Settings

AuditStore = AuditLog | PostgresAuditLog
# What reading or writing either log may raise when its storage is unavailable.
STORE_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, psycopg.Error)


def open_audit_log(settings: Settings, *, create: bool = True) -> AuditStore:
    """``create=False`` to read an existing log without writing to it (no table, no file made)."""
    if settings.audit_log_dsn:
        return PostgresAuditLog(settings.audit_log_dsn, create=create)
    return AuditLog(settings.audit_log_path, create=create)


def describe(settings: Settings) -> str:
    """Where the log is, for messages: never the DSN (it holds a password)."""
    if settings.audit_log_dsn:
        return "the PostgreSQL audit log (JIT_AUDIT_LOG_DSN)"
    return f"the audit log {settings.audit_log_path}"
