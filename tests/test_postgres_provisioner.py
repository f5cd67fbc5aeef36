"""The PostgreSQL provisioner against a real server: what a granted role can and cannot do."""

from __future__ import annotations

import os
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from activities.provisioners.base import GrantSpec
from activities.provisioners.postgres import PostgresProvisioner, credentials_for
from core.provisioners.errors import GrantGoneError, ProvisionerConfigError, ProvisionerError, RevokedBeforeGrantError
from core.provisioners.postgres_config import (
    derive_password,
    load_password_secret,
    role_name,
    role_prefix,
)
from tests.pg import PgDatabase, pg_cluster, pg_db  # noqa: F401

DSN_ENV = "JIT_TEST_ADMIN_DSN"
SECRET = b"test-password-secret"
HOSTILE_TABLE = 'weird"; DROP TABLE x; --'
HOSTILE_SCHEMA = "odd'; schema"


@pytest.fixture
def db(pg_db: PgDatabase) -> PgDatabase:  # noqa: F811
    pg_db.execute("CREATE TABLE orders (id int, total int); INSERT INTO orders VALUES (1, 100)")
    pg_db.execute("CREATE TABLE secrets (s text); INSERT INTO secrets VALUES ('top')")
    pg_db.execute("CREATE TABLE x (y int)")
    pg_db.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(HOSTILE_SCHEMA)))
    hostile = sql.Identifier(HOSTILE_SCHEMA, HOSTILE_TABLE)
    pg_db.execute(sql.SQL("CREATE TABLE {} (v int); INSERT INTO {} VALUES (7)").format(hostile, hostile))
    return pg_db


def settings(**overrides: Any) -> dict[str, Any]:
    return {"type": "postgres", "dsn_env": DSN_ENV, "tables": ["public.orders"], **overrides}


def provisioner(db: PgDatabase, cfg: dict[str, Any] | None = None, **kwargs: Any) -> PostgresProvisioner:
    return PostgresProvisioner(cfg or settings(), secret=SECRET, environ={DSN_ENV: db.dsn}, **kwargs)


def spec(
    request_id: str, *, requester: str = "alice", action: str = "read", expires_in: timedelta = timedelta(minutes=15)
) -> GrantSpec:
    now = datetime.now(UTC)
    return GrantSpec(
        request_id=request_id,
        requester=requester,
        resource="postgres:orders/public.orders",
        action=action,
        activated_at=now,
        expires_at=now + expires_in,
        settings=settings(),
    )


def login(
    db: PgDatabase, request_id: str, requester: str = "alice", cfg: dict[str, Any] | None = None
) -> psycopg.Connection:
    c = credentials_for(request_id, cfg or settings(), requester=requester, secret=SECRET, environ={DSN_ENV: db.dsn})
    return psycopg.connect(
        host=c["host"], port=c["port"], dbname=c["dbname"], user=c["username"], password=c["password"], autocommit=True
    )


def roles_of(db: PgDatabase, request_id: str) -> list[str]:
    rows = db.execute("SELECT rolname FROM pg_roles WHERE starts_with(rolname, %s)", (role_prefix(request_id),))
    return [r[0] for r in rows]


def test_role_reads_exactly_the_granted_table(db: PgDatabase) -> None:
    rid = db.request_id()
    outcome = provisioner(db).grant(spec(rid))

    assert outcome.principal == role_name(rid, "alice") and outcome.created
    assert derive_password(SECRET, rid) not in outcome.model_dump_json()
    with login(db, rid) as conn:
        assert conn.execute("SELECT id, total FROM orders").fetchall() == [(1, 100)]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM secrets")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO orders VALUES (2, 200)")
    attrs = db.execute(
        "SELECT rolcanlogin, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls, "
        "rolconnlimit FROM pg_roles WHERE rolname = %s",
        (outcome.principal,),
    )
    assert attrs == [(True, False, False, False, False, False, False, 5)]


def test_write_and_column_grants_follow_the_catalog(db: PgDatabase) -> None:
    writer = db.request_id()
    provisioner(db).grant(spec(writer, action="write"))
    with login(db, writer) as conn:
        conn.execute("INSERT INTO orders VALUES (2, 200)")
        conn.execute("DELETE FROM orders WHERE id = 2")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("TRUNCATE orders")

    cfg = settings(tables=[{"schema": "public", "table": "orders", "columns": ["id"]}], connection_limit=2)
    reader = db.request_id()
    provisioner(db, cfg).grant(spec(reader))
    with login(db, reader, cfg=cfg) as conn:
        assert conn.execute("SELECT id FROM orders").fetchall() == [(1,)]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT total FROM orders")
    assert db.execute("SELECT rolconnlimit FROM pg_roles WHERE rolname = %s", (role_name(reader, "alice"),)) == [(2,)]


def test_revoke_ends_logins_and_open_sessions(db: PgDatabase) -> None:
    rid = db.request_id()
    p = provisioner(db)
    p.grant(spec(rid))
    session = login(db, rid)
    assert session.execute("SELECT count(*) FROM orders").fetchone() == (1,)

    outcome = p.revoke(rid)

    assert outcome.removed == [role_name(rid, "alice")] and outcome.sessions_terminated == 1
    with pytest.raises(psycopg.OperationalError):
        session.execute("SELECT 1")
    session.close()
    with pytest.raises(psycopg.OperationalError):
        login(db, rid)
    assert p.verify_revoked(rid)


def test_grant_and_revoke_are_idempotent(db: PgDatabase) -> None:
    rid = db.request_id()
    p = provisioner(db)
    assert p.grant(spec(rid)).created
    assert not p.grant(spec(rid)).created
    assert len(roles_of(db, rid)) == 1

    assert not p.revoke(rid).already_gone
    assert p.revoke(rid).already_gone
    assert roles_of(db, rid) == []


def test_concurrent_retries_of_one_grant_make_one_role(db: PgDatabase) -> None:
    rid = db.request_id()
    start = threading.Barrier(4)
    results: list[Any] = []

    def attempt() -> None:
        start.wait()
        try:
            results.append(provisioner(db).grant(spec(rid)).created)
        except Exception as e:  # recorded, asserted below
            results.append(e)

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, False, False, True]
    assert len(roles_of(db, rid)) == 1


def test_the_database_refuses_a_login_past_valid_until(db: PgDatabase) -> None:
    if not db.enforces_passwords:
        pytest.skip("this server does not check passwords (trust authentication)")
    rid = db.request_id()
    p = provisioner(db)
    p.grant(spec(rid, expires_in=timedelta(minutes=-1)))
    with pytest.raises(psycopg.OperationalError):
        login(db, rid)

    # Same role, same derived password: only VALID UNTIL changed.
    p.extend(rid, datetime.now(UTC) + timedelta(minutes=5))
    with login(db, rid) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_extend_moves_valid_until(db: PgDatabase) -> None:
    rid = db.request_id()
    p = provisioner(db)
    first = spec(rid)
    p.grant(first)
    later = first.expires_at + timedelta(minutes=30)

    p.extend(rid, later)

    assert db.execute("SELECT rolvaliduntil FROM pg_roles WHERE rolname = %s", (role_name(rid, "alice"),)) == [(later,)]
    p.revoke(rid)
    with pytest.raises(GrantGoneError):
        p.extend(rid, later + timedelta(minutes=5))


def test_hostile_names_are_quoted(db: PgDatabase) -> None:
    rid = db.request_id()
    requester = 'mallory"; DROP ROLE postgres; --'
    cfg = settings(tables=[{"schema": HOSTILE_SCHEMA, "table": HOSTILE_TABLE}])
    p = provisioner(db, cfg)
    outcome = p.grant(spec(rid, requester=requester))

    assert outcome.principal == role_name(rid, requester)
    assert outcome.principal is not None and len(outcome.principal) <= 63
    hostile = sql.Identifier(HOSTILE_SCHEMA, HOSTILE_TABLE)
    with login(db, rid, requester, cfg) as conn:
        assert conn.execute(sql.SQL("SELECT v FROM {}").format(hostile)).fetchall() == [(7,)]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM x")
    p.revoke(rid)
    assert db.execute("SELECT count(*) FROM x") == [(0,)]
    assert db.execute("SELECT rolname FROM pg_roles WHERE rolname = current_user") != []
    assert db.execute(sql.SQL("SELECT v FROM {}").format(hostile)) == [(7,)]


def test_verify_revoked_holds_only_when_role_and_sessions_are_gone(db: PgDatabase) -> None:
    rid = db.request_id()
    p = provisioner(db)
    p.grant(spec(rid))
    assert not p.verify_revoked(rid)

    # Someone drops the role by hand and leaves its session running.
    session = login(db, rid)
    role = sql.Identifier(role_name(rid, "alice"))
    db.execute(sql.SQL("DROP OWNED BY {}; DROP ROLE {}").format(role, role))
    assert roles_of(db, rid) == []
    assert not p.verify_revoked(rid)

    outcome = p.revoke(rid)
    assert outcome.sessions_terminated == 1
    assert p.verify_revoked(rid)
    with pytest.raises(psycopg.OperationalError):
        session.execute("SELECT 1")
    session.close()


def test_revoke_also_removes_privileges_granted_out_of_band(db: PgDatabase) -> None:
    rid = db.request_id()
    p = provisioner(db)
    p.grant(spec(rid))
    db.execute(sql.SQL("GRANT SELECT ON secrets TO {}").format(sql.Identifier(role_name(rid, "alice"))))

    p.revoke(rid)

    assert roles_of(db, rid) == [] and p.verify_revoked(rid)


def test_a_grant_after_revoke_is_refused(db: PgDatabase) -> None:
    rid = db.request_id()
    with pytest.raises(RevokedBeforeGrantError):
        provisioner(db, is_revoked=lambda request_id: request_id == rid).grant(spec(rid))
    assert roles_of(db, rid) == []


def test_bad_settings_fail_without_leaving_a_role(db: PgDatabase) -> None:
    rid = db.request_id()
    with pytest.raises(ProvisionerError, match="no_such_table"):
        provisioner(db, settings(tables=["public.orders", "public.no_such_table"])).grant(spec(rid))
    assert roles_of(db, rid) == []  # one transaction: the role went with the failed GRANT
    with pytest.raises(ProvisionerConfigError, match="delete"):
        provisioner(db).grant(spec(rid, action="delete"))
    with pytest.raises(ProvisionerConfigError, match="DELETE"):
        provisioner(db, settings(tables=[{"table": "orders", "columns": ["id"]}])).grant(spec(rid, action="write"))
    with pytest.raises(ProvisionerConfigError, match="privileges"):
        provisioner(db, settings(privileges={"read": ["SELECT; DROP TABLE x"]}))
    with pytest.raises(ProvisionerConfigError, match=DSN_ENV):
        PostgresProvisioner(settings(), secret=SECRET, environ={}).grant(spec(rid))


def test_role_names_and_passwords_are_derived(tmp_path: Path) -> None:
    rid = "3f0c2a4e-3b7d-4c55-9a0e-2d8f1e7b9c31"
    assert role_name(rid, "Alice@Example.com") == "jit_3f0c2a4e3b7d_alice_example_com"
    assert len(role_name(rid, "x" * 200)) == 63
    assert role_name(rid, "!!!") == "jit_3f0c2a4e3b7d_user"
    assert derive_password(SECRET, rid) == derive_password(SECRET, rid)
    assert len(derive_password(SECRET, rid)) == 32
    assert derive_password(SECRET, rid) != derive_password(SECRET, rid.replace("3f", "4f"))

    secret = load_password_secret(tmp_path)
    assert load_password_secret(tmp_path) == secret and len(secret) >= 32
    assert stat.S_IMODE(os.stat(tmp_path / "pg-password.key").st_mode) == 0o600
    assert load_password_secret(tmp_path, "configured") == b"configured"
