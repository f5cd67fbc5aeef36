"""The webhook provisioner against a real HTTP receiver, directly and through Temporal's retries."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from temporalio import workflow
from temporalio.client import WorkflowFailureError
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.provisioners.base import GrantOutcome, GrantSpec, RevokeOutcome
from activities.provisioners.webhook import WebhookProvisioner
from activities.provisioning import DeprovisionInput, ProvisioningActivities
from core.provisioners.errors import ProvisionerConfigError
from tests.conftest import free_port

SECRET_ENV = "JIT_TEST_WEBHOOK_SECRET"
SECRET = "webhook-test-secret"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class Receiver:
    url: str
    received: list[Received] = field(default_factory=list)
    # Statuses to answer with, in order; 200 once they run out.
    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver(url="")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with lock:
                # Recorded before answering: once the client has its answer, the test sees the request.
                rec.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                status, headers = rec.script.pop(0) if rec.script else (200, {})
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
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


def make_spec(url: str, **settings: Any) -> GrantSpec:
    now = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    return GrantSpec(
        request_id=str(uuid.uuid4()),
        requester="alice",
        resource="iam:prod/admin",
        action="read",
        activated_at=now,
        expires_at=now + timedelta(minutes=15),
        settings={"type": "webhook", "url": url, "secret_env": SECRET_ENV, **settings},
    )


def webhook(spec: GrantSpec) -> WebhookProvisioner:
    return WebhookProvisioner(spec.settings, context=spec, environ={SECRET_ENV: SECRET})


def verify_signature(r: Received) -> bool:
    expected = "sha256=" + hmac.new(SECRET.encode(), r.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(r.headers["x-jit-signature"], expected)


def test_grant_posts_a_signed_event(receiver: Receiver) -> None:
    spec = make_spec(receiver.url)
    outcome = webhook(spec).grant(spec)

    assert outcome.request_id == spec.request_id and outcome.provisioner == "webhook"
    [r] = receiver.received
    assert r.path == "/jit/events"
    assert r.json() == {
        "event": "grant",
        "request_id": spec.request_id,
        "requester": "alice",
        "resource": "iam:prod/admin",
        "action": "read",
        "activated_at": "2026-11-27T12:00:00+00:00",
        "expires_at": "2026-11-27T12:15:00+00:00",
    }
    assert verify_signature(r)
    assert r.headers["idempotency-key"] == f"{spec.request_id}:grant"
    assert r.headers["x-jit-timestamp"].isdigit()
    assert r.headers["content-type"] == "application/json"


def test_extend_and_revoke_carry_the_grant(receiver: Receiver) -> None:
    spec = make_spec(receiver.url)
    p = webhook(spec)
    later = spec.expires_at + timedelta(minutes=30)
    p.extend(spec.request_id, later)
    outcome = p.revoke(spec.request_id)

    extend, revoke = receiver.received
    assert extend.json()["event"] == "extend" and extend.json()["expires_at"] == later.isoformat()
    assert extend.headers["idempotency-key"] == f"{spec.request_id}:extend"
    assert revoke.json()["event"] == "revoke" and revoke.json()["requester"] == "alice"
    assert revoke.headers["idempotency-key"] == f"{spec.request_id}:revoke"
    assert all(verify_signature(r) for r in receiver.received)
    assert not outcome.already_gone and p.verify_revoked(spec.request_id)


def test_5xx_is_retryable_and_the_retry_is_the_same_event(receiver: Receiver) -> None:
    receiver.script = [(503, {})]
    spec = make_spec(receiver.url)
    p = webhook(spec)
    with pytest.raises(ApplicationError) as failed:
        p.grant(spec)
    assert failed.value.type == "WebhookUnavailable" and not failed.value.non_retryable

    p.grant(spec)
    first, second = receiver.received
    assert first.body == second.body
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]


def test_4xx_is_not_retryable(receiver: Receiver) -> None:
    receiver.script = [(400, {})]
    spec = make_spec(receiver.url)
    with pytest.raises(ApplicationError) as failed:
        webhook(spec).grant(spec)
    assert failed.value.type == "WebhookRejected" and failed.value.non_retryable
    assert "400" in failed.value.message


def test_429_honours_retry_after(receiver: Receiver) -> None:
    receiver.script = [(429, {"Retry-After": "7"})]
    spec = make_spec(receiver.url)
    with pytest.raises(ApplicationError) as failed:
        webhook(spec).grant(spec)
    assert not failed.value.non_retryable and failed.value.next_retry_delay == timedelta(seconds=7)


def test_revoke_of_something_gone_succeeds(receiver: Receiver) -> None:
    receiver.script = [(410, {})]
    spec = make_spec(receiver.url)
    assert webhook(spec).revoke(spec.request_id).already_gone


def test_unreachable_receiver_is_retryable() -> None:
    spec = make_spec(f"http://127.0.0.1:{free_port()}/x", timeout_s=5)
    with pytest.raises(ApplicationError) as failed:
        webhook(spec).grant(spec)
    assert failed.value.type == "WebhookUnavailable" and not failed.value.non_retryable


def test_settings_are_checked(receiver: Receiver) -> None:
    spec = make_spec(receiver.url)
    with pytest.raises(ProvisionerConfigError, match=SECRET_ENV):
        WebhookProvisioner(spec.settings, context=spec, environ={})
    with pytest.raises(ProvisionerConfigError, match="url"):
        WebhookProvisioner({**spec.settings, "url": "file:///etc/passwd"}, context=spec, environ={SECRET_ENV: "s"})
    with pytest.raises(ProvisionerConfigError, match="credentials"):
        WebhookProvisioner(
            {**spec.settings, "url": "https://u:p@example.com/"}, context=spec, environ={SECRET_ENV: "s"}
        )
    assert receiver.received == []


# -- through Temporal: the retry policy does the retrying ---------------------


@workflow.defn(sandboxed=False)
class WebhookStep:
    @workflow.run
    async def run(self, step: str, spec: GrantSpec) -> GrantOutcome | RevokeOutcome:
        retry = RetryPolicy(initial_interval=timedelta(milliseconds=50), maximum_attempts=5)
        if step == "provision":
            return await workflow.execute_activity_method(
                ProvisioningActivities.provision, spec, start_to_close_timeout=timedelta(seconds=30), retry_policy=retry
            )
        return await workflow.execute_activity_method(
            ProvisioningActivities.deprovision,
            DeprovisionInput(spec=spec, reason="test"),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=retry,
        )


async def run_step(env: WorkflowEnvironment, step: str, spec: GrantSpec) -> Any:
    acts = ProvisioningActivities(password_secret=b"unused", environ={SECRET_ENV: SECRET})
    queue = f"webhook-test-{uuid.uuid4()}"
    with ThreadPoolExecutor(max_workers=2) as executor:
        async with Worker(
            env.client,
            task_queue=queue,
            workflows=[WebhookStep],
            activities=[acts.provision, acts.deprovision],
            activity_executor=executor,
        ):
            return await env.client.execute_workflow(
                WebhookStep.run, args=[step, spec], id=f"webhook-{uuid.uuid4()}", task_queue=queue
            )


async def test_temporal_retries_a_503_until_the_receiver_takes_it(
    dev_env: WorkflowEnvironment, receiver: Receiver
) -> None:
    receiver.script = [(503, {})]
    spec = make_spec(receiver.url)
    outcome = await run_step(dev_env, "provision", spec)
    assert GrantOutcome.model_validate(outcome).request_id == spec.request_id
    assert len(receiver.received) == 2


async def test_temporal_does_not_retry_a_rejected_grant(dev_env: WorkflowEnvironment, receiver: Receiver) -> None:
    receiver.script = [(400, {})]
    with pytest.raises(WorkflowFailureError) as failed:
        await run_step(dev_env, "provision", make_spec(receiver.url))
    assert isinstance(failed.value.cause, ActivityError)
    assert isinstance(failed.value.cause.cause, ApplicationError)
    assert failed.value.cause.cause.type == "WebhookRejected"
    assert len(receiver.received) == 1


async def test_a_rejected_revoke_is_still_retried(dev_env: WorkflowEnvironment, receiver: Receiver) -> None:
    receiver.script = [(400, {})]
    spec = make_spec(receiver.url)
    outcome = await run_step(dev_env, "deprovision", spec)
    assert RevokeOutcome.model_validate(outcome).request_id == spec.request_id
    assert [r.json()["event"] for r in receiver.received] == ["revoke", "revoke"]
