"""Schema migrations for the PostgreSQL stores, applied at start-up by every process.

Each store (a *component*: ``grants``, ...) lists its steps in order; the
database remembers how many it has applied in ``jit_schema_version``. Any
number of workers and APIs may start at once: the whole check-and-apply runs in
one transaction under a transaction-level advisory lock, so exactly one of them
applies a step and the others find it done (``CREATE TABLE IF NOT EXISTS`` alone
races: two sessions can both pass the check and one fails on the catalog's
unique index). A step is never edited once released: a change is a new step.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

# One lock for every component's migrations: they are rare and short.
_LOCK = "SELECT pg_advisory_xact_lock(hashtext('jit-access schema'))"
_VERSIONS = """
CREATE TABLE IF NOT EXISTS jit_schema_version (
    component text PRIMARY KEY,
    version   integer NOT NULL
)
"""


class SchemaTooNewError(RuntimeError):
    """The database was migrated by a newer jit-access than this one."""


def migrate(db: psycopg.Connection, component: str, steps: Sequence[str]) -> int:
    """Apply the steps of ``component`` not yet applied; returns the version now in the database."""
    with db.transaction():
        db.execute(_LOCK)
        db.execute(_VERSIONS)
        row = db.execute("SELECT version FROM jit_schema_version WHERE component = %s", (component,)).fetchone()
        current = row[0] if row else 0
        if current > len(steps):
            raise SchemaTooNewError(
                f"the {component} schema in the database is version {current}, this jit-access knows up to "
                f"{len(steps)}: run the newer jit-access, or restore the database"
            )
        for step in steps[current:]:
            db.execute(step)  # type: ignore[arg-type]  # fixed text from this code base
        if current < len(steps):
            db.execute(
                "INSERT INTO jit_schema_version (component, version) VALUES (%s, %s) "
                "ON CONFLICT (component) DO UPDATE SET version = excluded.version",
                (component, len(steps)),
            )
    return len(steps)
