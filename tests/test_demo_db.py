"""``make demo-db`` (python -m devstack.demo_db): the README's database, reachable as its banner says.

Each test starts its own server on a free port and a fresh data dir, so they run
beside a real ``make demo-db``. The data dir's parent is made with mkdtemp, not
under pytest's tmp root: as root, PostgreSQL runs as the ``pgserver`` user,
which must be able to reach it (see tests/pg.py).
"""

from __future__ import annotations

import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import yaml

from activities.provisioners.base import GrantSpec
from activities.provisioners.postgres import PostgresProvisioner
from core.provisioners.postgres_config import derive_password, role_name
from devstack.demo_db import PASSWORD_FILE
from devstack.demo_db_banner import banner, catalog_targets
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
START_DEADLINE_S = 60.0
DSN_ENV = "JIT_PG_DEMO_TEST_DSN"
SECRET = b"demo-db-test-secret"


@dataclass
class DemoDb:
    proc: subprocess.Popen[bytes]
    log: Path
    port: int
    data_dir: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def dsn(self) -> str:
        found = re.search(rf"export {DSN_ENV}=(\S+)", self.output())
        assert found, self.output()
        return found.group(1).strip("'")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=60)


def write_catalog(path: Path, port: int) -> Path:
    resource = {
        "id": "postgres:orders-staging/public.orders",
        "provisioner": {"type": "postgres", "dsn_env": DSN_ENV, "tables": ["public.orders"], "port": port},
    }
    path.write_text(yaml.safe_dump({"resources": [resource]}))
    return path


def start(base: Path, port: int, name: str) -> DemoDb:
    log = base / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "devstack.demo_db",
                "--port", str(port),
                "--data-dir", str(base / "db"),
                "--catalog", str(write_catalog(base / "catalog.yaml", port)),
            ],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    db = DemoDb(proc, log, port, base / "db")
    deadline = time.monotonic() + START_DEADLINE_S
    while "Ctrl-C stops it" not in db.output():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"demo-db not ready (exit {proc.poll()}):\n{db.output()}")
        time.sleep(0.1)  # polling the output for the banner, not synchronising on time
    return db


@pytest.fixture
def base() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="jit-test-demo-db-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def demo_db(base: Path) -> Iterator[DemoDb]:
    db = start(base, free_port(), "first")
    yield db
    if db.proc.poll() is None:
        assert db.stop() == 0, db.output()


def spec(request_id: str, requester: str = "alice", action: str = "read") -> GrantSpec:
    now = datetime.now(UTC)
    return GrantSpec(
        request_id=request_id,
        requester=requester,
        resource="postgres:orders-staging/public.orders",
        action=action,
        activated_at=now,
        expires_at=now + timedelta(minutes=15),
        settings={"type": "postgres", "dsn_env": DSN_ENV, "tables": ["public.orders"]},
    )


def test_the_admin_logs_in_over_tcp_with_its_password_and_public_gets_nothing(demo_db: DemoDb) -> None:
    dsn = demo_db.dsn()
    assert f"@127.0.0.1:{demo_db.port}/orders" in dsn
    assert stat.S_IMODE(demo_db.data_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((demo_db.data_dir / PASSWORD_FILE).stat().st_mode) == 0o600
    # The banner's psql is the wheel's, and it works with the DSN as printed.
    psql = re.search(r"^\s+(\S+/psql) ", demo_db.output(), re.M)
    assert psql, demo_db.output()
    out = subprocess.run(
        [psql.group(1), dsn, "-Atc", "SELECT count(*) FROM public.orders"], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0 and int(out.stdout) > 0, out.stderr

    with psycopg.connect(dsn, autocommit=True) as conn:
        tables = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1").fetchall()
        assert tables == [("customers",), ("orders",)]
        # The README's grants, no more: the admin can hand out orders, not customers.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM public.customers")
        # A role nobody granted anything cannot even connect: PUBLIC's defaults are revoked.
        stranger = f"stranger_{uuid.uuid4().hex[:8]}"
        conn.execute(f"CREATE ROLE {stranger} LOGIN PASSWORD 'pw'")
        try:
            with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
                psycopg.connect(dsn, user=stranger, password="pw")  # noqa: S106
        finally:
            conn.execute(f"DROP ROLE {stranger}")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(dsn, password="wrong")  # noqa: S106


def test_the_provisioner_grants_and_revokes_with_the_demo_admin(demo_db: DemoDb) -> None:
    dsn = demo_db.dsn()
    provisioner = PostgresProvisioner(spec("x").settings, secret=SECRET, environ={DSN_ENV: dsn})
    request_id = str(uuid.uuid4())
    outcome = provisioner.grant(spec(request_id))
    assert outcome.principal == role_name(request_id, "alice")
    login = {"user": outcome.principal, "password": derive_password(SECRET, request_id)}
    with psycopg.connect(dsn, autocommit=True, **login) as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (4,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM customers")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM orders")
    provisioner.revoke(request_id)
    assert provisioner.verify_revoked(request_id)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(dsn, **login)


def test_a_restart_keeps_the_data_and_the_printed_dsn(demo_db: DemoDb, base: Path) -> None:
    dsn = demo_db.dsn()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE orders SET status = 'refunded' WHERE id = 1002")
    assert demo_db.stop() == 0, demo_db.output()
    assert "stopped" in demo_db.output()

    again = start(base, demo_db.port, "second")
    try:
        assert again.dsn() == dsn
        with psycopg.connect(dsn) as conn:
            rows = conn.execute("SELECT id, status FROM orders ORDER BY id").fetchall()
        assert len(rows) == 4 and (1002, "refunded") in rows
    finally:
        assert again.stop() == 0, again.output()


def test_a_port_in_use_is_refused_with_the_way_out(base: Path, demo_db: DemoDb) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "devstack.demo_db", "--port", str(demo_db.port), "--data-dir", str(base / "other")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert f"port {demo_db.port} is already in use" in result.stderr and "JIT_DEMO_DB_PORT" in result.stderr
    assert not (base / "other").exists()


def test_the_banner_says_what_to_change_in_the_catalog(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(
        yaml.safe_dump(
            {
                "resources": [
                    {"id": "k8s:prod/logs"},
                    {
                        "id": "postgres:orders-staging/public.orders",
                        "provisioner": {
                            "type": "postgres",
                            "dsn_env": "JIT_PG_ORDERS_STAGING_DSN",
                            "tables": ["public.orders"],
                            "host": "localhost",
                            "port": 5432,
                            "dbname": "orders",
                        },
                    },
                ]
            }
        )
    )
    lines = "\n".join(banner(5433, "pw", tmp_path, catalog_targets(catalog, 5433), Path("/opt/pg/bin/psql")))
    assert "export JIT_PG_ORDERS_STAGING_DSN=postgresql://access_admin:pw@127.0.0.1:5433/orders" in lines
    assert "postgres:orders-staging/public.orders's provisioner: port: 5432 -> port: 5433" in lines
    assert "host:" not in lines and "dbname:" not in lines  # localhost and orders already reach it

    # No postgres provisioner in the catalog: the block to add, with this port.
    empty = "\n".join(
        banner(5433, "pw", tmp_path, catalog_targets(tmp_path / "missing.yaml", 5433), Path("/opt/pg/bin/psql"))
    )
    assert "dsn_env: JIT_PG_ORDERS_STAGING_DSN" in empty and "port: 5433" in empty
