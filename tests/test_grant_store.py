"""The grant store, on both backends (core/grants.py, core/grants_pg.py): the same answers, the same tombstone.

Every test of the store's rules runs against the SQLite file and against a
fresh PostgreSQL database; the PostgreSQL-only tests cover what a shared
database adds: start-up migrations from many processes at once, a pool that
survives the server dropping its connections, and a URL that never shows.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest

from core.grant_store import describe, open_grant_store
from core.grants import GrantRevokedError, GrantStore, SqliteGrantStore
from core.grants_pg import PostgresGrantStore
from core.pg_migrations import SchemaTooNewError
from core.settings import Settings
from tests.pg import PgDatabase, pg_cluster, pg_db  # noqa: F401

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
PLUS2 = timezone(timedelta(hours=2))


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[GrantStore]:
    if request.param == "sqlite":
        opened: GrantStore = open_grant_store(Settings(_env_file=None, data_dir=tmp_path))  # type: ignore[call-arg]
        assert isinstance(opened, SqliteGrantStore)
    else:
        url = request.getfixturevalue("pg_db").dsn
        opened = open_grant_store(Settings(_env_file=None, data_dir=tmp_path, database_url=url))  # type: ignore[call-arg]
        assert isinstance(opened, PostgresGrantStore)
    yield opened
    opened.close()


def record(store: GrantStore, rid: str = "r1", *, expires: datetime = T0 + timedelta(hours=1), **kw: object):
    values = {"requester": "alice", "resource": "k8s:prod/logs", "action": "read", "activated_at": T0}
    return store.record(request_id=rid, expires_at=expires, **{**values, **kw})  # type: ignore[arg-type]


def test_a_recorded_grant_reads_back_as_written_in_utc(store: GrantStore) -> None:
    row = record(store, "auth0|123", activated_at=T0.astimezone(PLUS2), expires=T0 + timedelta(microseconds=1))
    assert row == store.lookup("auth0|123")
    assert (row.request_id, row.requester, row.resource, row.action) == ("auth0|123", "alice", "k8s:prod/logs", "read")
    assert (row.activated_at, row.expires_at, row.revoked_at) == (T0, T0 + timedelta(microseconds=1), None)
    assert row.activated_at.utcoffset() == timedelta(0)
    assert store.lookup("no-such-request") is None


def test_recording_again_returns_the_first_grant_unchanged(store: GrantStore) -> None:
    first = record(store)
    again = record(store, requester="mallory", expires=T0 + timedelta(days=7))
    assert again == first == store.lookup("r1")


def test_a_revoke_is_a_tombstone_that_a_late_issue_cannot_lift(store: GrantStore) -> None:
    revoked_at = store.revoke("r1")  # the rollback ran before the issue activity's retry
    with pytest.raises(GrantRevokedError):
        record(store)
    row = store.lookup("r1")
    assert row is not None and row.revoked_at == revoked_at
    assert not row.is_live(T0)


def test_a_revoke_after_the_issue_ends_the_grant_and_keeps_the_first_time(store: GrantStore) -> None:
    record(store)
    first = store.revoke("r1")
    assert first.utcoffset() == timedelta(0)
    assert store.revoke("r1") == first  # a retried revoke moves nothing
    row = store.lookup("r1")
    assert row is not None and row.revoked_at == first and row.requester == "alice"
    with pytest.raises(GrantRevokedError):
        record(store)


def test_extend_moves_a_live_grant_and_refuses_any_other(store: GrantStore) -> None:
    record(store)
    later = T0 + timedelta(hours=3)
    assert store.extend("r1", later).expires_at == later
    assert store.lookup("r1").expires_at == later  # type: ignore[union-attr]
    with pytest.raises(GrantRevokedError):
        store.extend("never-issued", later)
    store.revoke("r1")
    with pytest.raises(GrantRevokedError):
        store.extend("r1", later + timedelta(hours=1))
    assert store.lookup("r1").expires_at == later  # type: ignore[union-attr]


def test_count_live_counts_neither_expired_nor_revoked(store: GrantStore) -> None:
    record(store, "live", expires=T0 + timedelta(hours=1))
    record(store, "expired", expires=T0 - timedelta(seconds=1))
    record(store, "revoked")
    store.revoke("revoked")
    store.revoke("tombstone")
    assert store.count_live(T0) == 1
    assert store.count_live(T0 + timedelta(hours=2)) == 0


def test_racing_issues_and_revokes_never_leave_a_revoked_grant_live(store: GrantStore) -> None:
    """Each request: issues and revokes at once from many threads. Once revoked, always revoked."""

    def issue(rid: str) -> bool:
        try:
            record(store, rid)
            return True
        except GrantRevokedError:
            return False

    rids = [f"race-{i}" for i in range(20)]
    with ThreadPoolExecutor(8) as pool:
        issued = list(pool.map(issue, rids * 2))
        revoked = list(pool.map(store.revoke, rids * 2))
    assert len(issued) == 40
    for rid, first, second in zip(rids, revoked[:20], revoked[20:], strict=True):
        assert first == second  # first revoke wins, whichever thread ran it
        with pytest.raises(GrantRevokedError):
            record(store, rid)
        assert store.lookup(rid).revoked_at == first  # type: ignore[union-attr]


# -- PostgreSQL only ---------------------------------------------------------------


def _open(url: str) -> str:
    PostgresGrantStore(url).close()
    return "ok"


def test_many_processes_starting_at_once_migrate_once(pg_db: PgDatabase) -> None:  # noqa: F811
    # Processes, as workers and APIs starting together would; threads on top in each.
    with multiprocessing.get_context("spawn").Pool(4) as procs:
        results = procs.map(_open, [pg_db.dsn] * 8)
    with ThreadPoolExecutor(8) as pool:
        results += list(pool.map(_open, [pg_db.dsn] * 8))
    assert results == ["ok"] * 16
    assert pg_db.execute("SELECT component, version FROM jit_schema_version") == [("grants", 1)]
    assert pg_db.execute("SELECT count(*) FROM pg_tables WHERE tablename = 'jit_grants'") == [(1,)]


def test_a_database_migrated_by_a_newer_version_is_refused_by_name(pg_db: PgDatabase) -> None:  # noqa: F811
    _open(pg_db.dsn)
    pg_db.execute("UPDATE jit_schema_version SET version = 99 WHERE component = 'grants'")
    with pytest.raises(SchemaTooNewError, match="grants schema in the database is version 99"):
        PostgresGrantStore(pg_db.dsn)


def test_the_store_outlives_the_server_dropping_its_connections(pg_db: PgDatabase) -> None:  # noqa: F811
    store = PostgresGrantStore(pg_db.dsn)
    try:
        record(store)
        # What a PostgreSQL restart or failover does to the pool's idle connections.
        pg_db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (pg_db.name,),
        )
        assert store.lookup("r1") is not None
        assert store.count_live(T0) == 1
    finally:
        store.close()


def test_the_url_is_never_shown(pg_db: PgDatabase, tmp_path: Path) -> None:  # noqa: F811
    url = psycopg.conninfo.make_conninfo(pg_db.dsn, password="s3cret-pw")  # noqa: S106
    settings = Settings(_env_file=None, data_dir=tmp_path, database_url=url)  # type: ignore[call-arg]
    assert "s3cret-pw" not in repr(settings)
    assert "s3cret-pw" not in describe(settings)
    store = open_grant_store(settings)
    try:
        assert "s3cret-pw" not in repr(store)
    finally:
        store.close()
    assert not (tmp_path / "grants.sqlite3").exists()


def test_a_refused_login_names_no_password(pg_db: PgDatabase, tmp_path: Path) -> None:  # noqa: F811
    if not pg_db.enforces_passwords:
        pytest.skip("this PostgreSQL lets everyone in")
    role = f"jit_store_{pg_db.name[-8:]}"
    pg_db.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'right-pw'")
    try:
        url = psycopg.conninfo.make_conninfo(pg_db.dsn, user=role, password="wr0ng-s3cret")  # noqa: S106
        with pytest.raises(psycopg.OperationalError) as refused:
            open_grant_store(Settings(_env_file=None, data_dir=tmp_path, database_url=url))  # type: ignore[call-arg]
        assert "password authentication failed" in str(refused.value)
        assert "wr0ng-s3cret" not in str(refused.value)
    finally:
        pg_db.execute(f"DROP ROLE {role}")


def test_the_database_url_puts_the_audit_log_there_too_unless_its_own_dsn_is_set(
    pg_db: PgDatabase,  # noqa: F811
    tmp_path: Path,
) -> None:
    from core.audit_log_pg import PostgresAuditLog
    from core.audit_store import describe as describe_audit
    from core.audit_store import open_audit_log

    shared = Settings(_env_file=None, data_dir=tmp_path, database_url=pg_db.dsn)  # type: ignore[call-arg]
    assert isinstance(open_audit_log(shared), PostgresAuditLog)
    assert describe_audit(shared) == "the PostgreSQL audit log (JIT_DATABASE_URL)"
    assert pg_db.execute("SELECT count(*) FROM pg_tables WHERE tablename = 'jit_audit'") == [(1,)]
    elsewhere = "postgresql:///jit_audit_elsewhere"
    both = Settings(_env_file=None, data_dir=tmp_path, database_url=pg_db.dsn, audit_log_dsn=elsewhere)  # type: ignore[call-arg]
    assert both.audit_dsn == elsewhere
    assert describe_audit(both) == "the PostgreSQL audit log (JIT_AUDIT_LOG_DSN)"
    assert not (tmp_path / "audit.sqlite3").exists()
