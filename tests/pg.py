"""A real PostgreSQL for the tests: import the fixtures from here.

- ``pg_cluster`` (session): ``JIT_TEST_PG_DSN`` when set (a superuser DSN),
  else a private server from the pgserver wheel, one per test process, set to
  require passwords from everyone but its superuser so that ``VALID UNTIL``
  and wrong passwords are really enforced.
- ``pg_db``: a fresh database per test (so tests run in parallel under
  xdist) plus the admin DSN; roles are cluster-wide, so it drops the roles of
  every request id it handed out.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from core.provisioners.postgres_config import role_prefix


@dataclass
class PgCluster:
    admin_dsn: str
    # False on a server that lets everyone in (trust): tests of VALID UNTIL skip there.
    enforces_passwords: bool


@dataclass
class PgDatabase:
    name: str
    dsn: str  # the admin, connected to this database
    enforces_passwords: bool
    request_ids: list[str] = field(default_factory=list)

    def request_id(self) -> str:
        rid = str(uuid.uuid4())
        self.request_ids.append(rid)
        return rid

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self.dsn, autocommit=True)

    def execute(self, query: sql.Composable | str, params: tuple = ()) -> list[tuple]:
        with self.connect() as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []


def _require_passwords(dsn: str) -> None:
    """pgserver trusts every local connection; make only the superuser trusted.

    A reload is asynchronous: wait until a new session sees a configuration
    loaded after ours was written, which is exactly the state we need.
    """
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT current_setting('hba_file'), pg_conf_load_time(), current_user").fetchone()
        assert row is not None
        hba_file, loaded_before, superuser = row
        Path(hba_file).write_text(f"local all {superuser} trust\nlocal all all scram-sha-256\n")
        conn.execute("SELECT pg_reload_conf()")
    for _ in range(10_000):
        with psycopg.connect(dsn) as conn:
            now = conn.execute("SELECT pg_conf_load_time()").fetchone()
        if now is not None and now[0] > loaded_before:
            return
    raise RuntimeError("PostgreSQL did not reload pg_hba.conf")


def _probe_passwords(dsn: str) -> bool:
    name = f"jit_probe_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'right'").format(sql.Identifier(name)))
        try:
            with psycopg.connect(dsn, user=name, password="wrong"):  # noqa: S106
                return False
        except psycopg.OperationalError:
            return True
        finally:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    dsn = os.environ.get("JIT_TEST_PG_DSN")
    if dsn:
        yield PgCluster(dsn, _probe_passwords(dsn))
        return
    import pgserver

    # Not under pytest's temp root: as root, pgserver runs PostgreSQL as its
    # own user, and any pytest session starting meanwhile makes that root
    # 0700 again, locking the server out of its own data directory.
    base = Path(tempfile.mkdtemp(prefix="jit-test-pg-"))
    server = pgserver.get_server(base / "data", cleanup_mode="delete")
    try:
        _require_passwords(server.get_uri())
        yield PgCluster(server.get_uri(), True)
    finally:
        server.cleanup()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pg_db(pg_cluster: PgCluster) -> Iterator[PgDatabase]:
    name = f"jit_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_cluster.admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    db = PgDatabase(name, make_conninfo(pg_cluster.admin_dsn, dbname=name), pg_cluster.enforces_passwords)
    yield db
    with db.connect() as conn:
        for rid in db.request_ids:
            roles = conn.execute("SELECT rolname FROM pg_roles WHERE starts_with(rolname, %s)", (role_prefix(rid),))
            for (role,) in roles.fetchall():
                conn.execute(
                    sql.SQL("SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE usename = {}").format(
                        sql.Literal(role)
                    )
                )
                conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
                conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
    with psycopg.connect(pg_cluster.admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
