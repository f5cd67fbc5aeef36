"""``JIT_DATABASE_URL``: the whole story through HTTP with the grant store and the audit log in PostgreSQL.

The data dir starts empty and gets neither SQLite file: introspection and the
audit export read PostgreSQL, so a second API on another machine would see the
same answers (tests/test_scale_out.py does that with separate processes).
"""

from __future__ import annotations

import json
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from tests.conftest import running_stack
from tests.e2e_support import wait_until
from tests.pg import PgDatabase, pg_cluster, pg_db  # noqa: F401

ORDERS = "postgres:orders/public.orders"


async def test_lifecycle_with_the_shared_state_in_postgres(
    dev_env: WorkflowEnvironment,
    pg_db: PgDatabase,  # noqa: F811
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    async with running_stack(dev_env, data_dir, database_url=pg_db.dsn) as stack:
        alice = stack.auth("alice", "engineers")
        server = stack.auth("orders-db", "resource-servers")
        created = await stack.http.post(
            "/v1/requests",
            json={"resource": ORDERS, "action": "read", "duration": "PT15M", "reason": "debugging INC-1"},
            headers=alice,
        )
        assert created.status_code == 201, created.text
        rid = created.json()["id"]
        approved = await stack.http.post(
            f"/v1/requests/{rid}/approve", json={"comment": "ok"}, headers=stack.auth("bob", "db-owners")
        )
        assert approved.json()["status"] == "active", approved.text
        token = (await stack.http.get(f"/v1/requests/{rid}/credentials", headers=alice)).json()["access_token"]

        active = await stack.http.post("/v1/introspect", data={"token": token}, headers=server)
        assert (active.json()["active"], active.json()["sub"]) == (True, "alice")
        live = pg_db.execute("SELECT requester, resource, revoked_at FROM jit_grants WHERE request_id = %s", (rid,))
        assert live == [("alice", ORDERS, None)]

        revoked = await stack.http.post(f"/v1/requests/{rid}/revoke", json={"reason": "done"}, headers=alice)
        assert revoked.json()["status"] == "revoked"
        inactive = await stack.http.post("/v1/introspect", data={"token": token}, headers=server)
        assert inactive.json() == {"active": False}
        assert pg_db.execute("SELECT revoked_at IS NOT NULL FROM jit_grants WHERE request_id = %s", (rid,)) == [(True,)]

        # The audit log is in the same database, and the API's export reads it from there.
        def audited() -> list[str]:
            rows = pg_db.execute("SELECT body FROM jit_audit ORDER BY n")
            return [json.loads(body)["type"] for (body,) in rows if json.loads(body)["request_id"] == rid]

        async def revoke_audited() -> bool:
            return "revoked" in audited()

        await wait_until(revoke_audited, timeout=30, what="the revoke in the PostgreSQL audit log")
        exported = await stack.http.get("/v1/audit", headers=stack.auth("erin", "auditors"))
        assert exported.status_code == 200, exported.text
        types = [
            json.loads(line)["type"] for line in exported.text.splitlines() if json.loads(line)["request_id"] == rid
        ]
        assert types == audited()
        assert types[0] == "requested" and "approved" in types

    assert not (data_dir / "grants.sqlite3").exists()
    assert not (data_dir / "audit.sqlite3").exists()
