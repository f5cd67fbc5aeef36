"""A webhook-provisioned resource end to end: the API, a worker, the dev server and a real HTTP receiver.

One request, approved, extended and revoked: the receiver gets exactly the
grant, extend and revoke events of it, in that order, each signed with the
shared secret (which the worker reads from its environment, never history).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from core.models import Status
from core.temporal import workflow_id
from tests.conftest import Stack, make_settings
from tests.e2e_support import running_stack, write_catalog
from workflows.access_request import AccessRequestWorkflow

RESOURCE = "webhook:iam/admins"
SECRET_ENV = "JIT_E2E_WEBHOOK_SECRET"
SECRET = "e2e-webhook-secret"


@dataclass
class Event:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)

    def signed(self, secret: str) -> bool:
        expected = "sha256=" + hmac.new(secret.encode(), self.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(self.headers.get("x-jit-signature", ""), expected)


@dataclass
class Receiver:
    url: str = ""
    events: list[Event] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def snapshot(self) -> list[Event]:
        with self.lock:
            return list(self.events)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with rec.lock:  # recorded before answering: once the activity is done, the test sees it
                rec.events.append(Event(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec.url = f"http://127.0.0.1:{server.server_address[1]}/jit/events"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield rec
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
async def webhook_stack(
    dev_env: WorkflowEnvironment, receiver: Receiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Stack]:
    monkeypatch.setenv(SECRET_ENV, SECRET)  # the in-process worker's environment
    catalog = write_catalog(
        tmp_path / "catalog.yaml",
        {
            "id": RESOURCE,
            "description": "IAM admin group, granted by the IAM team's service",
            "actions": ["read"],
            "max_duration": "1h",
            "approval_timeout": "1h",
            "approvals_required": 1,
            "approver_groups": ["iam-owners"],
            "provisioner": {"type": "webhook", "url": receiver.url, "secret_env": SECRET_ENV, "timeout_s": 10},
        },
    )
    settings = make_settings(dev_env.client, tmp_path / "data", catalog_path=catalog)
    async with running_stack(settings) as stack:
        yield stack


async def test_grant_extend_revoke_reach_the_receiver_signed(webhook_stack: Stack, receiver: Receiver) -> None:
    stack = webhook_stack
    alice = stack.auth("alice", "engineers")
    created = await stack.http.post(
        "/v1/requests",
        json={"resource": RESOURCE, "action": "read", "duration": "15m", "reason": "INC-12: rotate keys"},
        headers=alice,
    )
    assert created.status_code == 201, created.text
    request_id = created.json()["id"]
    assert receiver.snapshot() == []  # nothing is granted before approval

    approved = await stack.http.post(
        f"/v1/requests/{request_id}/approve", json={}, headers=stack.auth("ivy", "iam-owners")
    )
    assert approved.status_code == 200, approved.text
    view = approved.json()
    assert view["status"] == "active"
    [grant] = receiver.snapshot()

    extended = await stack.http.post(
        f"/v1/requests/{request_id}/extend", json={"duration": "10m", "reason": "not done"}, headers=alice
    )
    assert extended.status_code == 200, extended.text
    revoked = await stack.http.post(f"/v1/requests/{request_id}/revoke", json={"reason": "done"}, headers=alice)
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["status"] == "revoked"
    assert revoked.json()["revocation_verified_at"] is not None

    events = receiver.snapshot()
    assert [e.json["event"] for e in events] == ["grant", "extend", "revoke"]
    assert events[0] == grant
    for event in events:
        assert event.path == "/jit/events"
        assert event.signed(SECRET), f"{event.json['event']} event not signed with the shared secret"
        assert not event.signed("another-secret")
        assert event.headers["content-type"] == "application/json"
        assert event.headers["idempotency-key"] == f"{request_id}:{event.json['event']}"
        assert event.headers["x-jit-timestamp"].isdigit()
        body = event.json
        assert (body["request_id"], body["requester"], body["resource"], body["action"]) == (
            request_id,
            "alice",
            RESOURCE,
            "read",
        )
        assert datetime.fromisoformat(body["activated_at"]) == datetime.fromisoformat(view["activated_at"])
    assert datetime.fromisoformat(events[0].json["expires_at"]) == datetime.fromisoformat(view["expires_at"])
    assert datetime.fromisoformat(events[1].json["expires_at"]) == datetime.fromisoformat(extended.json()["expires_at"])

    handle = stack.client.get_workflow_handle_for(AccessRequestWorkflow.run, workflow_id(request_id))
    result = await handle.result()
    assert result.status is Status.REVOKED
    # The secret is the worker's alone: nothing in the request's history names more than its variable.
    history = await handle.fetch_history()
    assert SECRET.encode() not in history.to_json().encode()


async def test_a_refused_grant_fails_the_request_and_rolls_back(
    dev_env: WorkflowEnvironment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A receiver that refuses the grant (4xx): the request ends failed, and the revoke event is still sent."""
    rec = Receiver()

    class Refusing(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with rec.lock:
                rec.events.append(Event(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            status = 403 if json.loads(body)["event"] == "grant" else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv(SECRET_ENV, SECRET)
        url = f"http://127.0.0.1:{server.server_address[1]}/jit/events"
        catalog = write_catalog(
            tmp_path / "catalog.yaml",
            {
                "id": RESOURCE,
                "actions": ["read"],
                "max_duration": "1h",
                "approvals_required": 0,
                "provisioner": {"type": "webhook", "url": url, "secret_env": SECRET_ENV},
            },
        )
        settings = make_settings(dev_env.client, tmp_path / "data", catalog_path=catalog)
        async with running_stack(settings) as stack:
            created = await stack.http.post(
                "/v1/requests",
                json={"resource": RESOURCE, "action": "read", "duration": "15m", "reason": "INC-13"},
                headers=stack.auth("alice", "engineers"),
            )
            assert created.status_code == 201, created.text
            request_id = created.json()["id"]
            handle = stack.client.get_workflow_handle_for(AccessRequestWorkflow.run, workflow_id(request_id))
            result = await handle.result()
        assert result.status is Status.FAILED
        assert result.failure is not None and "HTTP 403" in result.failure
        assert [e.json["event"] for e in rec.snapshot()] == ["grant", "revoke"]
        assert all(e.signed(SECRET) for e in rec.snapshot())
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
