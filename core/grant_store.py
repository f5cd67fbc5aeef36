"""Which grant store: PostgreSQL when ``JIT_DATABASE_URL`` is set, else the SQLite file in the data dir."""

from __future__ import annotations

from core.grants import GrantStore, SqliteGrantStore
from core.grants_pg import PostgresGrantStore
from core.settings import Settings


def open_grant_store(settings: Settings) -> GrantStore:
    """The grant store these settings name, its schema created or migrated (safe from many processes at once)."""
    if settings.database_url:
        return PostgresGrantStore(settings.database_url)
    return SqliteGrantStore(settings.grants_db_path)


def describe(settings: Settings) -> str:
    """Where the grant store is, for messages: never the URL (it holds a password)."""
    if settings.database_url:
        return "the PostgreSQL grant store (JIT_DATABASE_URL)"
    return f"the grant store {settings.grants_db_path}"
