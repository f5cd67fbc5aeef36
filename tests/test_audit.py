"""The audit trail: ``GET /v1/audit`` and ``jit audit`` against a real stack, the chain, fail-closed.

Every test uses its own user names: the dev server (and its visibility store) is
shared by the tests of a session.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client

import devstack.__main__ as devstack
from core.audit_log import AuditLog
from core.durations import parse_duration
from core.grant_store import open_grant_store
from core.models import AccessRequestView
from core.temporal import SA_ALERT, WORKFLOW_ID_PREFIX, workflow_id
from tests.conftest import Stack
from tests.e2e_support import wait_until
from workflows.access_request import AccessRequestWorkflow

ROOT = Path(__file__).resolve().parent.parent
JIT = str(Path(sys.executable).parent / "jit")
LOGS = "k8s:prod/logs"  # auto-approved
ORDERS = "postgres:orders/public.orders"  # 1 approval from db-owners
CUSTOMERS = "postgres:orders/public.customers"  # 2 approvals from db-owners or privacy


class People:
    """Fresh names for one test: alice asks, bob (db-owners) and carol (privacy) approve."""

    def __init__(self, stack: Stack) -> None:
        u = uuid.uuid4().hex[:8]
        self.stack = stack
        self.alice, self.bob, self.carol = f"alice-{u}", f"bob-{u}", f"carol-{u}"
        self.groups = {self.alice: ("engineers",), self.bob: ("db-owners",), self.carol: ("privacy",)}

    def auth(self, user: str) -> dict[str, str]:
        return self.stack.auth(user, *self.groups[user])

    async def create(self, resource: str, *, action: str = "read", duration: str = "15m") -> dict[str, Any]:
        body = {"resource": resource, "action": action, "duration": duration, "reason": f"audit test on {resource}"}
        response = await self.stack.http.post("/v1/requests", json=body, headers=self.auth(self.alice))
        assert response.status_code == 201, response.text
        return response.json()

    async def act(self, user: str, request_id: str, verb: str, **body: str) -> dict[str, Any]:
        response = await self.stack.http.post(f"/v1/requests/{request_id}/{verb}", json=body, headers=self.auth(user))
        assert response.status_code == 200, response.text
        return response.json()


def auditor(stack: Stack) -> dict[str, str]:
    return stack.auth("erin", "auditors")


async def export(stack: Stack, headers: dict[str, str] | None = None, **params: str) -> list[dict[str, Any]]:
    response = await stack.http.get("/v1/audit", params=params, headers=headers or auditor(stack))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in response.text.splitlines()]


async def finished(client: Client, request_id: str) -> AccessRequestView:
    """The workflow's result: once it is in, every event of the request is in the audit log."""
    return await client.get_workflow_handle_for(AccessRequestWorkflow.run, workflow_id(request_id)).result()


def story(events: list[dict[str, Any]], request_id: str) -> list[tuple[str, str | None, str | None]]:
    return [(e["type"], e["actor"], e["reason"]) for e in events if e["request_id"] == request_id]


def view_story(view: dict[str, Any]) -> list[tuple[str, str | None, str | None]]:
    """The same story told by the workflow itself (GET /v1/requests/{id}), for a request within retention."""
    told: list[tuple[str, str | None, str | None]] = [("requested", view["requester"], view["reason"])]
    told += [("approved", a["approver"], a["comment"]) for a in view["approvals"]]
    if view["denial"]:
        told.append(("denied", view["denial"]["actor"], view["denial"]["reason"]))
    if view["cancellation"]:
        told.append(("cancelled", view["cancellation"]["actor"], view["cancellation"]["reason"]))
    if view["status"] == "timed_out":
        told.append(("timed_out", None, None))
    if view["activated_at"]:
        told.append(("provisioned", None, None))
    told += [("extended", x["actor"], x["reason"]) for x in view["extensions"]]
    if view["failure"]:
        told.append(("failed", None, view["failure"]))
    if view["status"] == "revoked":
        told.append(("revoked", view["revocation"]["actor"], view["revocation"]["reason"]))
    if view["status"] == "expired":
        told.append(("expired", None, None))
    if view["review"]:
        told.append(("reviewed", view["review"]["actor"], view["review"]["reason"]))
    return told


def order_key(event: dict[str, Any]) -> tuple[datetime, str, int]:
    return datetime.fromisoformat(event["at"]), event["request_id"], event["seq"]


async def visible(client: Client, query: str) -> set[str]:
    return {w.id.removeprefix(WORKFLOW_ID_PREFIX) async for w in client.list_workflows(query)}


async def test_audit_export_tells_each_request_in_order(stack: Stack) -> None:
    p = People(stack)
    auto = await p.create(LOGS)
    assert auto["status"] == "active"

    two = await p.create(CUSTOMERS)
    await p.act(p.bob, two["id"], "approve", comment="ok from db-owners")
    assert (await p.act(p.carol, two["id"], "approve"))["status"] == "active"

    denied = await p.create(ORDERS)
    await p.act(p.bob, denied["id"], "deny", reason="not for this ticket")

    revoked = await p.create(ORDERS, action="write")
    assert (await p.act(p.bob, revoked["id"], "approve"))["status"] == "active"
    await p.act(p.alice, revoked["id"], "revoke", reason="done early")

    expired = await p.create(LOGS, duration="2s")
    ended = [await finished(stack.client, r["id"]) for r in (denied, revoked, expired)]
    assert [v.status for v in ended] == ["denied", "revoked", "expired"]

    events = await export(stack, requester=p.alice)
    reason = "audit test on {}".format
    assert {e["request_id"] for e in events} == {r["id"] for r in (auto, two, denied, revoked, expired)}
    assert story(events, auto["id"]) == [("requested", p.alice, reason(LOGS)), ("provisioned", None, None)]
    assert story(events, two["id"]) == [
        ("requested", p.alice, reason(CUSTOMERS)),
        ("approved", p.bob, "ok from db-owners"),
        ("approved", p.carol, None),
        ("provisioned", None, None),
    ]
    assert story(events, denied["id"]) == [
        ("requested", p.alice, reason(ORDERS)),
        ("denied", p.bob, "not for this ticket"),
    ]
    assert story(events, revoked["id"]) == [
        ("requested", p.alice, reason(ORDERS)),
        ("approved", p.bob, None),
        ("provisioned", None, None),
        ("revoked", p.alice, "done early"),
    ]
    assert story(events, expired["id"]) == [
        ("requested", p.alice, reason(LOGS)),
        ("provisioned", None, None),
        ("expired", None, None),
    ]
    # In order: by time, then request id, then seq; each request's seq counts from 1.
    assert events == sorted(events, key=order_key)
    for request in (auto, two, denied, revoked, expired):
        assert [e["seq"] for e in events if e["request_id"] == request["id"]] == list(
            range(1, len(story(events, request["id"])) + 1)
        )
    # "requested" carries the policy decision and version.
    first = next(e for e in events if e["request_id"] == two["id"])
    assert first["details"]["policy_version"] == two["policy_version"]
    assert first["details"]["auto_approve"] is False and first["details"]["stages"]
    assert next(e for e in events if e["request_id"] == auto["id"])["details"]["auto_approve"] is True
    assert all((e["requester"], e["event_id"]) == (p.alice, f"{e['request_id']}:{e['seq']}") for e in events)

    # The log and the workflows (still within retention) tell the same story.
    for request in (auto, two, denied, revoked, expired):
        view = (await stack.http.get(f"/v1/requests/{request['id']}", headers=auditor(stack))).json()
        assert story(events, request["id"]) == view_story(view), request["id"]
        provisioned = [e for e in events if e["request_id"] == request["id"] and e["type"] == "provisioned"]
        if provisioned:
            assert datetime.fromisoformat(provisioned[0]["details"]["activated_at"]) == datetime.fromisoformat(
                view["activated_at"]
            )
        approvals = [datetime.fromisoformat(a["at"]) for a in view["approvals"]]
        assert approvals == [
            order_key(e)[0] for e in events if e["request_id"] == request["id"] and e["type"] == "approved"
        ]

    # Filters and the window [from, to).
    only_logs = await export(stack, requester=p.alice, resource=LOGS)
    assert {e["request_id"] for e in only_logs} == {auto["id"], expired["id"]}
    cut = next(e for e in events if e["request_id"] == expired["id"])["at"]
    later = await export(stack, requester=p.alice, **{"from": cut})
    earlier = await export(stack, requester=p.alice, to=cut)
    assert later == [e for e in events if order_key(e)[0] >= datetime.fromisoformat(cut)]
    assert earlier + later == events
    assert await export(stack, headers=stack.auth("root", "jit-admins"), requester=p.alice) == events

    # Temporal visibility: one query per search attribute.
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    mine = f"JitRequester = '{p.alice}'"
    expected = {
        mine: {r["id"] for r in (auto, two, denied, revoked, expired)},
        f"JitResource = '{CUSTOMERS}' AND {mine}": {two["id"]},
        f"JitAction = 'write' AND {mine}": {revoked["id"]},
        f"JitStatus = 'denied' AND {mine}": {denied["id"]},
        f"JitStatus = 'active' AND {mine}": {auto["id"], two["id"]},
        f"JitStatus = 'expired' AND {mine}": {expired["id"]},
        f"JitApprovers = '{p.carol}'": {two["id"]},
        f"JitApprovers = '{p.bob}'": {two["id"], revoked["id"]},
        f"JitExpiresAt < '{now}' AND {mine}": {expired["id"]},
        f"JitExpiresAt > '{now}' AND {mine}": {auto["id"], two["id"], revoked["id"]},
    }
    for query, ids in expected.items():

        async def matches(query: str = query, ids: set[str] = ids) -> bool:
            return await visible(stack.client, query) == ids

        await wait_until(matches, timeout=30, what=query)


async def test_only_auditors_and_admins_export(stack: Stack) -> None:
    p = People(stack)
    await p.create(LOGS)
    for who in (p.alice, p.bob):
        refused = await stack.http.get("/v1/audit", headers=p.auth(who))
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "forbidden"
    assert (await stack.http.get("/v1/audit")).status_code == 401
    assert await export(stack, headers=stack.auth("root", "jit-admins"), requester=p.alice)


async def test_bad_window_and_filters_are_422_naming_the_field(stack: Stack) -> None:
    cases = [
        ({"from": "yesterday"}, "from"),
        ({"to": "2026-01-01T09:00:00"}, "to"),  # no time zone
        ({"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "to"),
        ({"requester": "alice\x1b[2J"}, "requester"),  # a control character
        ({"resource": "k8s:prod/logs\n"}, "resource"),
    ]
    for params, field in cases:
        response = await stack.http.get("/v1/audit", params=params, headers=auditor(stack))
        assert response.status_code == 422, (params, response.text)
        assert response.json()["error"]["field"] == field
        assert response.json()["error"]["message"].startswith(f"{field}: ")
    # Filters are values, not syntax (the store binds them): this one finds nothing, and says so.
    quoted = await stack.http.get("/v1/audit", params={"requester": "alice' OR 'x'='x"}, headers=auditor(stack))
    assert (quoted.status_code, quoted.text) == (200, "")
    # An empty window is no error; a "+" left unencoded in the URL (read as a space) still means +.
    empty = await stack.http.get(
        "/v1/audit?from=2026-01-01T00:00:00+02:00&to=2026-01-01T00:00:00+02:00", headers=auditor(stack)
    )
    assert (empty.status_code, empty.text) == (200, "")


async def jit(stack: Stack, *args: str, token: str | None = None) -> tuple[int, str, str]:
    """The ``jit`` command in a child process (the API answers from this event loop meanwhile).

    With the worker's Temporal settings, where ``jit audit verify`` finds the audit anchors.
    """
    env_args = ["--server", stack.base_url] + (["--token", token] if token else [])
    env = {
        **os.environ,
        "JIT_TEMPORAL_ADDRESS": stack.settings.temporal_address,
        "JIT_TEMPORAL_NAMESPACE": stack.settings.temporal_namespace,
        "JIT_TASK_QUEUE": stack.settings.task_queue,
    }
    proc = await asyncio.create_subprocess_exec(
        JIT, *env_args, *args,
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_jit_audit_writes_the_same_lines(stack: Stack, tmp_path: Path) -> None:
    p = People(stack)
    denied = await p.create(ORDERS)
    await p.act(p.bob, denied["id"], "deny", reason="no")
    await finished(stack.client, denied["id"])
    api = await stack.http.get("/v1/audit", params={"requester": p.alice}, headers=auditor(stack))

    target = tmp_path / "audit.jsonl"
    code, _, err = await jit(
        stack, "audit", "--requester", p.alice, "-o", str(target), token=stack.token("erin", "auditors")
    )
    assert code == 0, err
    assert target.read_text() == api.text and api.text.count("\n") == 2
    assert "2 events written" in err
    code, out, err = await jit(stack, "audit", "--requester", p.alice, token=stack.token("erin", "auditors"))
    assert (code, out) == (0, api.text), err

    code, _, err = await jit(
        stack, "audit", "-o", str(tmp_path / "no.jsonl"), token=p.stack.token(p.alice, "engineers")
    )
    assert code == 1 and "403 forbidden" in err
    assert not (tmp_path / "no.jsonl").exists()  # complete or not at all


def audit_rows(path: Path) -> list[tuple[int, str, str]]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT n, event_id, body FROM audit ORDER BY n").fetchall()


async def test_verify_names_the_record_that_was_edited(stack: Stack) -> None:
    p = People(stack)
    auto = await p.create(LOGS, duration="1s")
    denied = await p.create(ORDERS)
    await p.act(p.bob, denied["id"], "deny", reason="not now")
    for request in (auto, denied):
        await finished(stack.client, request["id"])
    path = stack.settings.audit_log_path
    data_dir = str(stack.settings.data_dir)
    rows = audit_rows(path)
    assert len(rows) == 5  # requested, provisioned, expired; requested, denied

    code, out, err = await jit(stack, "audit", "verify", "--data-dir", data_dir)
    assert (code, out.strip()) == (0, "ok: 5 records"), err

    # One byte of one record's body: "not now" -> "Not now".
    n, event_id, body = next(r for r in rows if r[1] == f"{denied['id']}:2")
    assert '"not now"' in body
    with sqlite3.connect(path) as db:
        db.execute("UPDATE audit SET body = ? WHERE n = ?", (body.replace('"not now"', '"Not now"'), n))
    code, out, err = await jit(stack, "audit", "verify", "--data-dir", data_dir)
    assert code == 1, out
    assert f"broken at record {n} (event {event_id}): content does not match its hash" in err

    # Put back, it holds again; a record removed breaks the chain at the one after it.
    with sqlite3.connect(path) as db:
        db.execute("UPDATE audit SET body = ? WHERE n = ?", (body, n))
    assert AuditLog(path, create=False).check() == (5, None)
    removed, after = rows[1], rows[2]
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM audit WHERE n = ?", (removed[0],))
    code, out, err = await jit(stack, "audit", "verify", "--data-dir", data_dir)
    assert code == 1, out
    assert f"broken at record {after[0]} (event {after[1]}): does not follow the record before it" in err

    code, _, err = await jit(stack, "audit", "verify", "--data-dir", str(stack.settings.data_dir / "nowhere"))
    assert code == 2 and "no audit log at" in err


async def test_a_grant_is_not_active_until_its_audit_record_is_written(stack: Stack) -> None:
    p = People(stack)
    request = await p.create(ORDERS)
    rid = request["id"]
    path = stack.settings.audit_log_path
    handle = stack.client.get_workflow_handle(workflow_id(rid))

    async def audit_write_failed() -> bool:
        # What an operator sees: the request's alert, and JitAlert in Temporal UI.
        view = (await stack.http.get(f"/v1/requests/{rid}", headers=p.auth(p.alice))).json()
        described = await handle.describe()
        return (
            "audit log write failing" in (view["alert"] or "")
            and "locked" in view["alert"]
            and described.typed_search_attributes.get(SA_ALERT) == "audit_failing"
        )

    async def status() -> str:
        return (await stack.http.get(f"/v1/requests/{rid}", headers=p.auth(p.alice))).json()["status"]

    async def active() -> bool:
        return await status() == "active"

    async def logged() -> list[str]:
        return [e.type for e in AuditLog(path, create=False).events() if e.request_id == rid]

    await wait_until(logged, what="the requested event in the audit log")
    # The audit store cannot be written: another connection holds its write lock
    # (file modes would not stop root; a lock stops anyone).
    lock = sqlite3.connect(path, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        approve = asyncio.create_task(
            stack.http.post(f"/v1/requests/{rid}/approve", json={}, headers=p.auth(p.bob), timeout=120)
        )
        await wait_until(audit_write_failed, what="the audit write to fail on the lock")
        # Provisioned (the grant store has it) but not active: no credentials.
        assert open_grant_store(stack.settings).lookup(rid) is not None
        assert await status() == "provisioning"
        refused = await stack.http.get(f"/v1/requests/{rid}/credentials", headers=p.auth(p.alice))
        assert refused.status_code == 409, refused.text
        assert await logged() == ["requested"]
        assert not approve.done()
    finally:
        lock.execute("ROLLBACK")
        lock.close()

    # The store is back: the retried write lands, then access is active. (The approver's
    # call answers with the outcome, or 503 if the API gave up waiting: the workflow goes on.)
    answered = await approve
    assert answered.status_code in (200, 503), answered.text
    if answered.status_code == 200:
        assert answered.json()["status"] == "active"
    await wait_until(active, what="the grant to become active")
    creds = await stack.http.get(f"/v1/requests/{rid}/credentials", headers=p.auth(p.alice))
    assert creds.status_code == 200, creds.text
    assert await logged() == ["requested", "approved", "provisioned"]
    # The alert is down once the write landed.
    assert (await stack.http.get(f"/v1/requests/{rid}", headers=p.auth(p.alice))).json()["alert"] is None
    assert (await handle.describe()).typed_search_attributes.get(SA_ALERT) is None


async def test_devstack_sets_the_namespace_retention(tmp_path: Path) -> None:
    from tests.test_devstack import Devstack, free_ports

    stack = Devstack(tmp_path / "data", tmp_path / "devstack.log", free_ports(3))
    try:
        await asyncio.to_thread(stack.wait_ready)
        client = await Client.connect(f"127.0.0.1:{stack.temporal_port}")
        described = await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace="default"))
        kept = described.config.workflow_execution_retention_ttl.ToTimedelta()
        assert kept == timedelta(seconds=parse_duration(devstack.RETENTION)) == timedelta(days=7)
        assert "closed requests stay in Temporal for 7d" in stack.output()
    finally:
        if stack.proc.poll() is None:
            assert await asyncio.to_thread(stack.interrupt) == 0, stack.output()
