"""A request's workflow ended outside jit-access (Temporal UI, the ``temporal`` CLI) never strands access.

- cancelled: the workflow revokes, as if the requester had;
- terminated: the API says so at once, mints no credentials, and ``POST …/revoke``
  revokes; the reconciler revokes whatever nobody asked about, PostgreSQL roles
  included, and records ``orphan_revoked`` in the audit log.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from core.audit_store import open_audit_log
from core.grant_store import open_grant_store
from core.models import ReconcileReport, Status
from core.reconcile_schedule import reconcile_now
from core.temporal import workflow_id
from tests.conftest import Stack, make_settings
from tests.e2e_support import (
    jit_roles,
    login,
    postgres_resource,
    provisioner_admin,
    running_stack,
    wait_until,
    write_catalog,
)
from tests.pg import PgDatabase, pg_cluster, pg_db  # noqa: F401
from workflows.access_request import CANCELLED_BY, AccessRequestWorkflow

ORDERS = "postgres:orders/public.orders"


async def active_request(stack: Stack, resource: str = ORDERS) -> str:
    created = await stack.http.post(
        "/v1/requests",
        json={"resource": resource, "action": "read", "duration": "PT15M", "reason": "INC-9"},
        headers=stack.auth("alice", "engineers"),
    )
    assert created.status_code == 201, created.text
    request_id = created.json()["id"]
    approved = await stack.http.post(
        f"/v1/requests/{request_id}/approve", json={}, headers=stack.auth("bob", "db-owners")
    )
    assert approved.json()["status"] == "active", approved.text
    return request_id


async def reconciled(stack: Stack, request_id: str) -> ReconcileReport:
    """Run the reconciler until it has revoked ``request_id``: it finds terminated requests through
    visibility, which learns of the termination moments after it."""

    async def once() -> ReconcileReport | None:
        report = await reconcile_now(stack.client, stack.settings)
        return report if any(r.request_id == request_id for r in report.revoked) else None

    return await wait_until(once, timeout=30, what=f"the reconciler to revoke {request_id}")


def live(stack: Stack, request_id: str) -> bool:
    row = open_grant_store(stack.settings).lookup(request_id)
    return row is not None and row.revoked_at is None


def audit_types(stack: Stack, request_id: str) -> list[str]:
    return [e.type for e in open_audit_log(stack.settings).export() if e.request_id == request_id]


async def test_cancelling_the_workflow_revokes_the_grant(stack: Stack) -> None:
    request_id = await active_request(stack)
    handle = stack.client.get_workflow_handle_for(AccessRequestWorkflow.run, workflow_id(request_id))
    await handle.cancel()
    view = await handle.result()
    assert view.status is Status.REVOKED
    assert view.revocation is not None and view.revocation.actor == CANCELLED_BY
    assert not live(stack, request_id)
    shown = await stack.http.get(f"/v1/requests/{request_id}", headers=stack.auth("alice", "engineers"))
    assert shown.json()["status"] == "revoked"


async def test_cancelling_a_pending_request_cancels_it(stack: Stack) -> None:
    created = await stack.http.post(
        "/v1/requests",
        json={"resource": ORDERS, "action": "read", "duration": "PT15M", "reason": "INC-9"},
        headers=stack.auth("alice", "engineers"),
    )
    handle = stack.client.get_workflow_handle_for(AccessRequestWorkflow.run, workflow_id(created.json()["id"]))
    await handle.cancel()
    assert (await handle.result()).status is Status.CANCELLED


async def test_a_terminated_request_is_shown_orphaned_and_revoke_revokes(stack: Stack) -> None:
    alice = stack.auth("alice", "engineers")
    request_id = await active_request(stack)
    creds = await stack.http.get(f"/v1/requests/{request_id}/credentials", headers=alice)
    token = creds.json()["access_token"]
    await stack.client.get_workflow_handle(workflow_id(request_id)).terminate(reason="clicked in Temporal UI")

    shown = (await stack.http.get(f"/v1/requests/{request_id}", headers=alice)).json()
    assert shown["orphaned"] is True and shown["status"] == "active" and "outside jit-access" in shown["alert"]
    refused = await stack.http.get(f"/v1/requests/{request_id}/credentials", headers=alice)
    assert refused.status_code == 409 and "ended outside jit-access" in refused.json()["error"]["message"]
    extend = await stack.http.post(
        f"/v1/requests/{request_id}/extend", json={"duration": "PT5M", "reason": "more"}, headers=alice
    )
    assert extend.status_code == 409

    revoked = await stack.http.post(f"/v1/requests/{request_id}/revoke", json={"reason": "done"}, headers=alice)
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["status"] == "revoked"
    assert not live(stack, request_id)
    server = stack.auth("orders-db", "resource-servers")
    assert (await stack.http.post("/v1/introspect", data={"token": token}, headers=server)).json() == {"active": False}
    assert "orphan_revoked" in audit_types(stack, request_id)


async def test_the_reconciler_revokes_what_a_termination_left(stack: Stack) -> None:
    request_id = await active_request(stack)
    kept = await active_request(stack)
    await stack.client.get_workflow_handle(workflow_id(request_id)).terminate(reason="clicked in Temporal UI")

    report = await reconciled(stack, request_id)
    assert [r.request_id for r in report.revoked] == [request_id]
    assert report.revoked[0].workflow_status == WorkflowExecutionStatus.TERMINATED.name.lower()
    assert not live(stack, request_id) and live(stack, kept)
    assert audit_types(stack, request_id)[-1] == "orphan_revoked"
    again = await reconcile_now(stack.client, stack.settings)
    assert again.revoked == []


# -- PostgreSQL: the role a terminated request leaves is dropped ---------------------

RESOURCE = "postgres:orphans/public.orders"
DSN_ENV = "JIT_ORPHANS_ORDERS_DSN"


@pytest.fixture
def orders_db(pg_db: PgDatabase) -> PgDatabase:  # noqa: F811
    pg_db.execute("CREATE TABLE orders (id int PRIMARY KEY, total int); INSERT INTO orders VALUES (1, 100)")
    return pg_db


async def test_the_reconciler_drops_a_terminated_requests_database_role(
    dev_env: WorkflowEnvironment, orders_db: PgDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with provisioner_admin(orders_db, ["public.orders"]) as admin:
        monkeypatch.setenv(DSN_ENV, admin)
        catalog = write_catalog(
            tmp_path / "catalog.yaml",
            postgres_resource(RESOURCE, orders_db, dsn_env=DSN_ENV, tables=["public.orders"]),
        )
        settings = make_settings(dev_env.client, tmp_path / "data", catalog_path=catalog)
        async with running_stack(settings) as stack:
            request_id = await active_request(stack, RESOURCE)
            orders_db.request_ids.append(request_id)
            creds = await stack.http.get(
                f"/v1/requests/{request_id}/credentials", headers=stack.auth("alice", "engineers")
            )
            database = creds.json()["database"]
            login(database).close()  # the role works
            await stack.client.get_workflow_handle(workflow_id(request_id)).terminate(reason="clicked in Temporal UI")
            # Lose the tombstone too, as a crash between the two steps would: the role alone is found.
            open_grant_store(settings).revoke(request_id)

            report = await reconciled(stack, request_id)
            assert [r.request_id for r in report.revoked] == [request_id]
            assert report.revoked[0].removed, "the role was dropped"
            assert not [r for r in jit_roles(orders_db) if request_id.replace("-", "")[:12] in r]
            with pytest.raises(Exception):
                login(database).close()
