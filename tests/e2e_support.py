"""Shared by the end-to-end provisioning tests: catalogs, stacks, subprocess workers, PostgreSQL probes.

- ``write_catalog``: tests/catalog.yaml plus extra resources, written to a test's tmp dir.
- ``postgres_resource``: a catalog entry provisioned into a ``pg_db`` database.
- ``running_stack``: the API (uvicorn) and optionally an in-process worker, for one settings object.
- ``WorkerProcess``: ``worker.py`` as a child process (SIGKILL-able), its output kept in a file.
- ``wait_until``: poll a condition with a deadline (never a sleep as synchronisation).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg
import yaml
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from core.provisioners.postgres_config import role_prefix
from core.settings import Settings
from core.temporal import connect
from tests.conftest import TEST_CATALOG, Stack, serve_api
from tests.pg import PgDatabase
from worker import build_worker

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


# -- catalogs ------------------------------------------------------------------


def write_catalog(path: Path, *resources: dict[str, Any]) -> Path:
    """The tests' catalog with ``resources`` appended, at ``path``."""
    data = yaml.safe_load(TEST_CATALOG.read_text())
    data["resources"] = [*data["resources"], *resources]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def postgres_resource(
    resource_id: str, db: PgDatabase, *, dsn_env: str, tables: list[Any], **entry: Any
) -> dict[str, Any]:
    """One approval from db-owners; host, port and dbname in the catalog, so the API needs no DSN."""
    where = conninfo_to_dict(db.dsn)
    return {
        "id": resource_id,
        "description": "end-to-end test database",
        "actions": ["read", "write"],
        "max_duration": "1h",
        "approval_timeout": "1h",
        "approvals_required": 1,
        "approver_groups": ["db-owners"],
        "provisioner": {
            "type": "postgres",
            "dsn_env": dsn_env,
            "tables": tables,
            "host": where.get("host") or "localhost",
            "port": int(where.get("port") or 5432),
            "dbname": db.name,
        },
        **entry,
    }


# -- processes -------------------------------------------------------------------


@asynccontextmanager
async def running_stack(settings: Settings, *, worker: bool = True) -> AsyncIterator[Stack]:
    """The API on a free port and, unless ``worker=False``, a worker in this process."""
    client = await connect(settings)
    with ThreadPoolExecutor(max_workers=8) as executor:
        async with AsyncExitStack() as stack:
            if worker:
                await stack.enter_async_context(build_worker(client, settings, executor))
            server, task, base_url = await serve_api(settings)
            try:
                async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
                    yield Stack(settings, client, http, base_url)
            finally:
                server.should_exit = True
                await task


def worker_env(settings: Settings, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {
        **os.environ,
        "JIT_DATA_DIR": str(settings.data_dir),
        "JIT_CATALOG_PATH": str(settings.catalog_path),
        "JIT_TEMPORAL_ADDRESS": settings.temporal_address,
        "JIT_TEMPORAL_NAMESPACE": settings.temporal_namespace,
        "JIT_TASK_QUEUE": settings.task_queue,
        "PYTHONUNBUFFERED": "1",
        # No metrics server: its fixed default port would clash between workers of parallel tests.
        "JIT_WORKER_METRICS_PORT": "0",
    }
    return {**env, **(extra or {})}


class WorkerProcess:
    """``worker.py`` in a child process; stdout and stderr appended to ``log_path``."""

    def __init__(self, settings: Settings, log_path: Path, env: Mapping[str, str] | None = None):
        self._env = worker_env(settings, env)
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        assert self.proc is None or self.proc.returncode is not None, "worker already running"
        with open(self.log_path, "ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, str(ROOT / "worker.py"), cwd=ROOT, env=self._env, stdout=log, stderr=log
            )

    async def kill(self) -> None:
        """SIGKILL: no shutdown, no goodbye to Temporal, connections dropped mid-statement."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 20)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()

    def log(self) -> bytes:
        return self.log_path.read_bytes() if self.log_path.exists() else b""


# -- waiting -----------------------------------------------------------------------


async def wait_until(check: Callable[[], Awaitable[T | None]], *, timeout: float = 90.0, what: str = "condition") -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = await check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.05)


# -- PostgreSQL --------------------------------------------------------------------


@contextmanager
def provisioner_admin(db: PgDatabase, tables: list[str]) -> Iterator[str]:
    """A least-privilege admin for the provisioner, as the README sets one up: LOGIN CREATEROLE,
    member of pg_signal_backend, the grant option on the database, schema and ``tables``. Not a
    superuser, so the tests see what such an admin can and cannot see. Yields its DSN."""
    name = f"prov_{uuid.uuid4().hex[:12]}"
    password = uuid.uuid4().hex
    admin = sql.Identifier(name)
    with db.connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEROLE PASSWORD {}").format(admin, sql.Literal(password)))
        conn.execute(sql.SQL("GRANT pg_signal_backend TO {}").format(admin))
        conn.execute(
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {} WITH GRANT OPTION").format(sql.Identifier(db.name), admin)
        )
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {} WITH GRANT OPTION").format(admin))
        for table in tables:
            conn.execute(
                sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE {} TO {} WITH GRANT OPTION").format(
                    sql.Identifier(*table.split(".")), admin
                )
            )
    try:
        yield make_conninfo(db.dsn, user=name, password=password)
    finally:
        with db.connect() as conn:
            # The request roles first (the admin holds ADMIN OPTION on each), then the admin.
            for rid in db.request_ids:
                for (role,) in conn.execute(
                    "SELECT rolname FROM pg_roles WHERE starts_with(rolname, %s)", (role_prefix(rid),)
                ).fetchall():
                    conn.execute(
                        "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE usename = %s", (role,)
                    )
                    conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
                    conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
            conn.execute("SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE usename = %s", (name,))
            conn.execute(sql.SQL("DROP OWNED BY {}").format(admin))
            conn.execute(sql.SQL("DROP ROLE {}").format(admin))


def advisory_key(request_id: str) -> int:
    """The advisory lock the PostgreSQL provisioner takes per request (activities/provisioners/postgres.py)."""
    return int.from_bytes(hashlib.sha256(b"jit-access:" + request_id.encode()).digest()[:8], "big", signed=True)


def jit_roles(db: PgDatabase) -> list[str]:
    """Every role of the cluster made by the provisioner (the ``jit_`` prefix)."""
    return [r[0] for r in db.execute("SELECT rolname FROM pg_roles WHERE starts_with(rolname, 'jit_') ORDER BY 1")]


def login(database: Mapping[str, Any]) -> psycopg.Connection[Any]:
    """Connect as the requester, with what ``GET /credentials`` returned under ``database``."""
    return psycopg.connect(
        host=database["host"],
        port=database["port"],
        dbname=database["dbname"],
        user=database["username"],
        password=database["password"],
        autocommit=True,
        connect_timeout=10,
    )


def provisioner_blocked(db: PgDatabase) -> bool:
    """A provisioner session (application_name jit-access) is waiting on an advisory lock in ``db``."""
    rows = db.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name = 'jit-access' "
        "AND wait_event_type = 'Lock' AND wait_event = 'advisory'",
        (db.name,),
    )
    return bool(rows)
