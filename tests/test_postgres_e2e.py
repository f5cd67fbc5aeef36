"""PostgreSQL access end to end: the API, a worker, the Temporal dev server and a real PostgreSQL.

What a requester gets from ``GET /credentials`` logs in, reads exactly the
granted table, and stops working on revoke (open sessions included) and on
expiry. A worker SIGKILLed while it grants or revokes leaves neither a wrong
end state nor an orphan role.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from cli.client import CliError
from cli.psql import psql_command
from core.models import AccessRequestView, Status
from core.provisioners.postgres_config import role_name, role_prefix
from core.temporal import workflow_id
from tests.conftest import Stack, make_settings
from tests.e2e_support import (
    WorkerProcess,
    advisory_key,
    jit_roles,
    login,
    postgres_resource,
    provisioner_admin,
    provisioner_blocked,
    running_stack,
    wait_until,
    write_catalog,
)
from tests.pg import PgDatabase, pg_cluster, pg_db  # noqa: F401
from tests.test_cli import jit
from workflows.access_request import AccessRequestWorkflow

RESOURCE = "postgres:e2e/public.orders"
DSN_ENV = "JIT_E2E_ORDERS_DSN"


@pytest.fixture
def orders_db(pg_db: PgDatabase) -> PgDatabase:  # noqa: F811
    pg_db.execute("CREATE TABLE orders (id int PRIMARY KEY, total int); INSERT INTO orders VALUES (1, 100), (2, 250)")
    pg_db.execute("CREATE TABLE customers (id int, email text); INSERT INTO customers VALUES (1, 'jane@example.com')")
    return pg_db


@pytest.fixture
def admin_dsn(orders_db: PgDatabase) -> Iterator[str]:
    """The worker's admin DSN: a least-privilege role, not the superuser."""
    with provisioner_admin(orders_db, ["public.orders"]) as dsn:
        yield dsn


def catalog_for(tmp_path: Path, db: PgDatabase) -> Path:
    return write_catalog(
        tmp_path / "catalog.yaml", postgres_resource(RESOURCE, db, dsn_env=DSN_ENV, tables=["public.orders"])
    )


@pytest.fixture
async def pg_stack(
    dev_env: WorkflowEnvironment,
    orders_db: PgDatabase,
    admin_dsn: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Stack]:
    # The admin DSN is the in-process worker's; the API answers from the catalog's host/port/dbname.
    monkeypatch.setenv(DSN_ENV, admin_dsn)
    settings = make_settings(dev_env.client, tmp_path / "data", catalog_path=catalog_for(tmp_path, orders_db))
    async with running_stack(settings) as stack:
        yield stack


async def file_request(stack: Stack, db: PgDatabase, duration: str | int, reason: str = "INC-7: orders check") -> str:
    created = await stack.http.post(
        "/v1/requests",
        json={"resource": RESOURCE, "action": "read", "duration": duration, "reason": reason},
        headers=stack.auth("alice", "engineers"),
    )
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "pending"
    request_id = created.json()["id"]
    db.request_ids.append(request_id)  # pg_db drops whatever is left of it, pass or fail
    return request_id


async def approve(stack: Stack, request_id: str) -> dict[str, Any]:
    approved = await stack.http.post(
        f"/v1/requests/{request_id}/approve", json={"comment": "ok"}, headers=stack.auth("bob", "db-owners")
    )
    assert approved.status_code == 200, approved.text
    return approved.json()


async def database_credentials(stack: Stack, request_id: str) -> dict[str, Any]:
    creds = await stack.http.get(f"/v1/requests/{request_id}/credentials", headers=stack.auth("alice", "engineers"))
    assert creds.status_code == 200, creds.text
    database = creds.json()["database"]
    assert database is not None
    return database


def assert_login_refused(database: dict[str, Any]) -> None:
    with pytest.raises(psycopg.OperationalError):
        login(database).close()


def assert_session_terminated(session: psycopg.Connection[Any]) -> None:
    with pytest.raises(psycopg.OperationalError):
        session.execute("SELECT 1")
    session.close()


def roles_of(db: PgDatabase, *request_ids: str) -> list[str]:
    return [r for r in jit_roles(db) if r.startswith(tuple(role_prefix(rid) for rid in request_ids))]


async def result_of(client: Client, request_id: str) -> AccessRequestView:
    handle = client.get_workflow_handle_for(AccessRequestWorkflow.run, workflow_id(request_id))
    return await asyncio.wait_for(handle.result(), timeout=120)


async def test_credentials_read_the_granted_table_only_until_revoked(pg_stack: Stack, orders_db: PgDatabase) -> None:
    stack, db = pg_stack, orders_db
    request_id = await file_request(stack, db, "15m")
    assert roles_of(db, request_id) == []

    approved = await approve(stack, request_id)
    assert approved["status"] == "active"
    assert approved["principal"] == role_name(request_id, "alice")
    database = await database_credentials(stack, request_id)
    assert database["username"] == role_name(request_id, "alice")
    assert database["dbname"] == db.name

    with login(database) as conn:
        assert conn.execute("SELECT id, total FROM orders ORDER BY id").fetchall() == [(1, 100), (2, 250)]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM customers")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO orders VALUES (3, 1)")
    # A session left open: revoke must end it, not only refuse new logins.
    session = login(database)
    assert session.execute("SELECT count(*) FROM orders").fetchone() == (2,)

    revoked = await stack.http.post(
        f"/v1/requests/{request_id}/revoke", json={"reason": "done"}, headers=stack.auth("alice", "engineers")
    )
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["status"] == "revoked"

    assert_session_terminated(session)
    assert_login_refused(database)
    assert roles_of(db, request_id) == []
    view = await stack.http.get(f"/v1/requests/{request_id}", headers=stack.auth("alice", "engineers"))
    assert view.json()["status"] == "revoked"
    assert view.json()["revocation_verified_at"] is not None
    assert (await result_of(stack.client, request_id)).status is Status.REVOKED
    gone = await stack.http.get(f"/v1/requests/{request_id}/credentials", headers=stack.auth("alice", "engineers"))
    assert gone.status_code == 409


async def test_access_ends_on_expiry(pg_stack: Stack, orders_db: PgDatabase) -> None:
    stack, db = pg_stack, orders_db
    request_id = await file_request(stack, db, 6)
    assert (await approve(stack, request_id))["status"] == "active"
    database = await database_credentials(stack, request_id)
    session = login(database)
    assert session.execute("SELECT count(*) FROM orders").fetchone() == (2,)

    result = await result_of(stack.client, request_id)

    assert result.status is Status.EXPIRED
    assert result.revocation is None and result.revocation_verified_at is not None
    assert_session_terminated(session)
    assert_login_refused(database)
    assert roles_of(db, request_id) == []


# -- a worker SIGKILLed in the middle of provisioning ---------------------------------


@pytest.fixture
async def crash_stack(
    dev_env: WorkflowEnvironment, orders_db: PgDatabase, admin_dsn: str, tmp_path: Path
) -> AsyncIterator[tuple[Stack, WorkerProcess]]:
    """The API in this process (without the admin DSN), the worker a child process (with it)."""
    settings = make_settings(dev_env.client, tmp_path / "data", catalog_path=catalog_for(tmp_path, orders_db))
    worker = WorkerProcess(settings, tmp_path / "worker.log", {DSN_ENV: admin_dsn})
    async with running_stack(settings, worker=False) as stack:
        await worker.start()
        try:
            yield stack, worker
        finally:
            await worker.stop()


async def status_of(client: Client, request_id: str) -> Status:
    handle = client.get_workflow_handle_for(AccessRequestWorkflow.run, workflow_id(request_id))
    return (await handle.query(AccessRequestWorkflow.get)).status


async def kill_while_blocked(db: PgDatabase, request_id: str, worker: WorkerProcess, act: Any) -> asyncio.Task[Any]:
    """Hold the request's advisory lock, start ``act``, SIGKILL the worker once the provisioner waits on
    the lock, release it and start a fresh worker. Returns the task of ``act``."""
    with db.connect() as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (advisory_key(request_id),))
        task = asyncio.create_task(act)

        async def blocked() -> bool:
            assert not task.done() or task.exception() is None, "the call ended before the worker was killed"
            return provisioner_blocked(db)

        await wait_until(blocked, what="the provisioner to wait on the request's lock")
        await worker.kill()
        holder.execute("SELECT pg_advisory_unlock(%s)", (advisory_key(request_id),))
    await worker.start()
    return task


async def test_worker_killed_while_granting(
    crash_stack: tuple[Stack, WorkerProcess], orders_db: PgDatabase, tmp_path: Path
) -> None:
    stack, worker = crash_stack
    db = orders_db
    request_id = await file_request(stack, db, "15m")

    approving = await kill_while_blocked(
        db,
        request_id,
        worker,
        stack.http.post(f"/v1/requests/{request_id}/approve", json={}, headers=stack.auth("bob", "db-owners")),
    )

    # The approve call may answer 503 (no worker in time): the workflow goes on regardless.
    async def active() -> bool:
        return await status_of(stack.client, request_id) is Status.ACTIVE

    await wait_until(active, timeout=120, what="the request to become active after the restart")
    assert (await approving).status_code in (200, 503)
    assert roles_of(db, request_id) == [role_name(request_id, "alice")]
    database = await database_credentials(stack, request_id)
    with login(database) as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (2,)

    revoked = await stack.http.post(
        f"/v1/requests/{request_id}/revoke", json={"reason": "crash drill over"}, headers=stack.auth("alice")
    )
    assert revoked.status_code == 200, revoked.text
    result = await result_of(stack.client, request_id)
    assert result.status is Status.REVOKED and result.revocation_verified_at is not None
    assert_login_refused(database)
    assert roles_of(db, request_id) == []


async def test_worker_killed_while_revoking(
    crash_stack: tuple[Stack, WorkerProcess], orders_db: PgDatabase, tmp_path: Path
) -> None:
    stack, worker = crash_stack
    db = orders_db
    request_id = await file_request(stack, db, "15m")
    assert (await approve(stack, request_id))["status"] == "active"
    database = await database_credentials(stack, request_id)
    session = login(database)
    assert session.execute("SELECT count(*) FROM orders").fetchone() == (2,)

    revoking = await kill_while_blocked(
        db,
        request_id,
        worker,
        stack.http.post(
            f"/v1/requests/{request_id}/revoke", json={"reason": "crash drill"}, headers=stack.auth("alice")
        ),
    )

    result = await result_of(stack.client, request_id)
    assert result.status is Status.REVOKED
    assert result.revocation is not None and result.revocation.reason == "crash drill"
    assert result.revocation_verified_at is not None
    assert (await revoking).status_code in (200, 503)
    assert_session_terminated(session)
    assert_login_refused(database)
    assert roles_of(db, request_id) == []


async def test_jit_token_psql_prints_a_command_that_logs_in(pg_stack: Stack, orders_db: PgDatabase) -> None:
    stack, db = pg_stack, orders_db
    request_id = await file_request(stack, db, "15m")
    assert (await approve(stack, request_id))["status"] == "active"

    printed = await jit(
        "--as", "alice", "--group", "engineers", "token", request_id, "--psql",
        server=stack.base_url, data_dir=stack.settings.data_dir,
    )  # fmt: skip
    assert printed.code == 0, printed.err
    command = printed.out.strip()
    assert command.startswith("PGPASSWORD=") and "/psql " in command
    assert f"user={role_name(request_id, 'alice')}" in command
    # Pasted into a shell as printed, it logs in as the grant's role and reads the granted table.
    proc = await asyncio.create_subprocess_shell(
        command + " -Atc 'SELECT current_user, count(*) FROM orders'",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()
    assert out.decode().strip() == f"{role_name(request_id, 'alice')}|2"
    revoked = await stack.http.post(
        f"/v1/requests/{request_id}/revoke", json={"reason": "done"}, headers=stack.auth("alice", "engineers")
    )
    assert revoked.status_code == 200, revoked.text


def test_psql_needs_database_credentials() -> None:
    with pytest.raises(CliError, match="no database credentials"):
        psql_command({"access_token": "eyJ...", "database": None})
