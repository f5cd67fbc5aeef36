"""The webhook channel end to end: a lifecycle's events arrive signed, versioned, each once.

A local HTTP receiver checks every POST with core/webhook_signature.verify, as
docs/notifications.md tells receivers to; a request that a receiver could be
fooled by (a changed body, an old timestamp, another secret) is refused.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from core.notify_models import EVENT_SCHEMA_VERSION
from core.webhook_signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, SignatureError, verify
from tests.conftest import running_stack
from tests.e2e_support import wait_until
from tests.webhook_receivers import Receiver, polled, receiving

ORDERS = "postgres:orders/public.orders"  # one approval from db-owners
SECRET = "whsec-test-0123456789abcdef"  # noqa: S105 - a test secret
SECRET_ENV = "JIT_TEST_WEBHOOK_SECRET"  # noqa: S105 - a variable name


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    with receiving(SECRET) as r:
        yield r


def config(url: str) -> str:
    return json.dumps(
        {
            "channels": {"hook": {"type": "webhook", "url": url, "secret_env": SECRET_ENV, "timeout_s": 5}},
            "routes": [
                {"audience": "approvers", "to": ["hook"]},
                {"audience": "requester", "to": ["hook"]},
            ],
        }
    )


async def test_a_lifecycle_arrives_signed_and_versioned_each_event_once(
    dev_env: WorkflowEnvironment, tmp_path: Path, receiver: Receiver
) -> None:
    path = tmp_path / "notifications.yaml"
    path.write_text(config(receiver.url))  # JSON is YAML
    async with running_stack(dev_env, tmp_path / "data", notifications_path=path) as stack:
        body = {"resource": ORDERS, "action": "read", "duration": "PT15M", "reason": "INC-42 <b>slow</b> queries"}
        filed = await stack.http.post("/v1/requests", json=body, headers=stack.auth("alice", "engineers"))
        assert filed.status_code == 201, filed.text
        rid = filed.json()["id"]
        approved = await stack.http.post(
            f"/v1/requests/{rid}/approve", json={"comment": "ok"}, headers=stack.auth("bob", "db-owners")
        )
        assert approved.json()["status"] == "active", approved.text
        creds = await stack.http.get(f"/v1/requests/{rid}/credentials", headers=stack.auth("alice", "engineers"))
        token = creds.json()["access_token"]
        await stack.http.post(f"/v1/requests/{rid}/revoke", json={"reason": "done"}, headers=stack.auth("alice"))

        await wait_until(
            polled(lambda: any(e["type"] == "revoked" for e in receiver.events())),
            timeout=60,
            what="the revoked event at the receiver",
        )

    events = receiver.events()
    assert Counter(e["type"] for e in events) == {"filed": 1, "active": 1, "revoked": 1}
    assert receiver.refused == []
    # Each event id once: no duplicates, and the idempotency key is the id.
    assert len({e["id"] for e in events}) == len(events)
    assert all(receiver.attempts[e["id"]] == 1 for e in events)
    for got in receiver.accepted:
        event = got.event
        assert got.headers["Idempotency-Key"] == got.headers["Jit-Webhook-Id"] == event["id"]
        assert got.headers[SIGNATURE_HEADER].startswith("v1=")
        assert (event["schema"], event["version"]) == ("jit-access.notification", EVENT_SCHEMA_VERSION)
        request = event["request"]
        assert (request["id"], request["requester"], request["resource"]) == (rid, "alice", ORDERS)
        assert (request["duration_s"], request["reason"]) == (900, "INC-42 <b>slow</b> queries")
        assert token not in got.body.decode()

    by_type = {e["type"]: e for e in events}
    assert by_type["filed"]["audience"] == "group:db-owners"
    assert by_type["filed"]["approval"]["groups"] == ["db-owners"]
    assert by_type["active"]["approval"]["approved_by"] == ["bob"]  # "approved" and "active" are one message
    assert by_type["active"]["grant"]["expires_at"] is not None
    assert (by_type["revoked"]["actor"], by_type["revoked"]["detail"]) == ("alice", "done")


async def test_verify_refuses_a_changed_body_an_old_timestamp_and_another_secret(
    dev_env: WorkflowEnvironment, tmp_path: Path, receiver: Receiver
) -> None:
    path = tmp_path / "notifications.yaml"
    path.write_text(config(receiver.url))
    async with running_stack(dev_env, tmp_path / "data", notifications_path=path) as stack:
        body = {"resource": ORDERS, "action": "read", "duration": "PT15M", "reason": "INC-43"}
        filed = await stack.http.post("/v1/requests", json=body, headers=stack.auth("alice", "engineers"))
        assert filed.status_code == 201, filed.text
        await wait_until(polled(lambda: receiver.accepted), timeout=60, what="the filed event")

    genuine = receiver.accepted[0]
    headers, sent = genuine.headers, genuine.body
    stamp = int(headers[TIMESTAMP_HEADER])
    assert verify(SECRET, headers, sent, now=stamp + 299) == headers["Jit-Webhook-Id"]

    tampered = sent.replace(b"INC-43", b"INC-44")
    with pytest.raises(SignatureError, match="does not match"):
        verify(SECRET, headers, tampered, now=stamp)
    with pytest.raises(SignatureError, match="more than 300s"):
        verify(SECRET, headers, sent, now=stamp + 301)
    with pytest.raises(SignatureError, match="does not match"):
        verify("another secret", headers, sent, now=stamp)
    # The id is signed too: the same body and signature under another event id fail.
    with pytest.raises(SignatureError, match="does not match"):
        verify(SECRET, {**headers, "Jit-Webhook-Id": "other:1:filed"}, sent, now=stamp)
    # A replay with its timestamp moved forward: the timestamp is signed, so only the secret could.
    with pytest.raises(SignatureError, match="does not match"):
        verify(SECRET, {**headers, TIMESTAMP_HEADER: str(stamp + 60)}, sent, now=stamp + 60)
    with pytest.raises(SignatureError, match="missing"):
        verify(SECRET, {k: v for k, v in headers.items() if k != SIGNATURE_HEADER}, sent, now=stamp)
