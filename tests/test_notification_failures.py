"""A channel that is down never holds a grant up: the notification gives up, the grant goes on.

Three webhook channels for the requester: one answers 500 to everything, one
accepts the connection and never answers (``timeout_s: 1``), one works (and
gets each notification once, however often the others are retried). An auto-approved
two-second grant is active at once, has its credentials, and expires on its
own; each of its two notifications (active, expired) is tried
``max_attempts`` (2) times on each channel and then given up, counted in the
worker's ``jit_notifications_failed_total``; the workflow then completes.
The first attempt runs inline (a local activity), the rest as a retried
activity; once a channel failed inline, the next event skips that attempt.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from temporalio.testing import WorkflowEnvironment

from core.metrics import WorkerMetrics
from core.temporal import connect, workflow_id
from tests.conftest import Stack, make_settings, serve_api
from tests.e2e_support import wait_until
from tests.webhook_receivers import Receiver, Silent, receiving, silent
from tests.workflow_support import deliveries, inline_deliveries
from worker import build_worker
from workflows.access_request import AccessRequestWorkflow

LOGS = "k8s:prod/logs"  # auto-approved
SECRET_ENV = "JIT_TEST_WEBHOOK_SECRET"  # noqa: S105 - a variable name
SECRET = "whsec-failures"  # noqa: S105 - a test secret
MAX_ATTEMPTS = 2


@dataclass
class Broken:
    stack: Stack
    metrics: WorkerMetrics
    failing: Receiver  # answers 500
    hole: Silent  # never answers
    healthy: Receiver  # answers 204: delivered once, however often the others are retried

    def failed(self) -> dict[str, float]:
        """jit_notifications_failed_total by event kind, for webhook channels, as /metrics shows it."""
        return {labels["kind"]: value for labels, value in self._webhook("jit_notifications_failed_total")}

    def deferred(self) -> dict[tuple[str, str], float]:
        """jit_notifications_deferred_total by event kind and why, for webhook channels."""
        return {
            (labels["kind"], labels["why"]): value
            for labels, value in self._webhook("jit_notifications_deferred_total")
        }

    def _webhook(self, name: str) -> list[tuple[dict[str, str], float]]:
        text = generate_latest(self.metrics.registry).decode()
        return [
            (s.labels, s.value)
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == name and s.labels.get("channel") == "webhook"
        ]


@asynccontextmanager
async def stack_with(
    dev_env: WorkflowEnvironment, tmp_path: Path, notifications: dict[str, Any], threads: int
) -> AsyncIterator[tuple[Stack, WorkerMetrics]]:
    """A worker (``threads`` lifecycle threads) and the API, notifying as ``notifications`` says."""
    config = tmp_path / "notifications.yaml"
    config.write_text(json.dumps(notifications))
    settings = make_settings(dev_env.client, tmp_path / "data", notifications_path=config)
    client = await connect(settings)
    metrics = WorkerMetrics()
    with ThreadPoolExecutor(max_workers=threads) as executor:
        async with build_worker(client, settings, executor, metrics):
            api, task, base_url = await serve_api(settings)
            try:
                async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
                    yield Stack(settings, client, http, base_url, api.config.app), metrics
            finally:
                api.should_exit = True
                await task


@pytest.fixture
async def broken(
    dev_env: WorkflowEnvironment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Broken]:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    with receiving(SECRET, status=500) as failing, silent() as hole, receiving(SECRET) as healthy:
        channel = {"type": "webhook", "secret_env": SECRET_ENV, "timeout_s": 1}
        notifications = {
            "channels": {
                "failing": {**channel, "url": failing.url},
                "silent": {**channel, "url": hole.url},
                "healthy": {**channel, "url": healthy.url},
            },
            "routes": [{"audience": "requester", "to": ["failing", "silent", "healthy"]}],
            "max_attempts": MAX_ATTEMPTS,
            "give_up_after": "60s",
        }
        async with stack_with(dev_env, tmp_path, notifications, threads=8) as (stack, metrics):
            yield Broken(stack, metrics, failing, hole, healthy)


async def test_a_grant_is_active_at_once_and_expires_on_time_while_every_channel_fails(broken: Broken) -> None:
    stack = broken.stack
    alice = stack.auth("alice", "engineers")
    body = {"resource": LOGS, "action": "read", "duration": "2", "reason": "INC-500: channels down"}
    created = await stack.http.post("/v1/requests", json=body, headers=alice)
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "active"  # not held up by the notification
    rid = created.json()["id"]
    creds = await stack.http.get(f"/v1/requests/{rid}/credentials", headers=alice)
    assert creds.status_code == 200, creds.text

    async def status_is_expired() -> bool:
        response = await stack.http.get(f"/v1/requests/{rid}", headers=alice)
        return response.json()["status"] == "expired"

    # Expires on its own, whatever the notifications are doing.
    await wait_until(status_is_expired, timeout=30, what="the grant to expire")

    # Both notifications given up on both channels, each after MAX_ATTEMPTS attempts.
    async def given_up() -> dict[str, float] | None:
        failed = broken.failed()
        return failed if failed == {"active": 2.0, "expired": 2.0} else None

    await wait_until(given_up, timeout=60, what="active and expired given up on both channels")
    assert sorted(broken.failing.attempts.values()) == [MAX_ATTEMPTS, MAX_ATTEMPTS]
    assert sorted(broken.hole.attempts.values()) == [MAX_ATTEMPTS, MAX_ATTEMPTS]
    assert set(broken.failing.attempts) == set(broken.hole.attempts)  # the same two events, same ids
    assert broken.failing.refused == []  # every attempt was signed correctly

    # The healthy channel got each event once: a retry resends only what failed.
    assert sorted(broken.healthy.attempts.values()) == [1, 1]
    assert set(broken.healthy.attempts) == set(broken.failing.attempts)
    sent = generate_latest(broken.metrics.registry).decode()
    assert 'jit_notifications_sent_total{channel="webhook",kind="active"} 1.0' in sent
    # The workflow ends once its deliveries have given up.
    handle = stack.client.get_workflow_handle_for(AccessRequestWorkflow.run, workflow_id(rid))
    assert (await handle.result()).status == "expired"

    # In its history: each event tried inline once (the healthy channel done there), then only
    # the failing routes as activities; "expired" did not wait on the channels "active" found down.
    inline = await inline_deliveries(handle)
    assert [summary for summary, _ in inline] == [
        "notify requester via failing, silent, healthy: active",
        "notify requester via failing, silent, healthy: expired",
    ]
    assert [(done.failed, done.held_back) for _, done in inline] == [([0, 1], []), ([], [0, 1])]
    assert broken.deferred() == {
        ("active", "failed"): 1.0,  # the 500
        ("active", "no answer in time"): 1.0,  # the silent one, past inline_ms
        ("expired", "held back"): 2.0,  # both, a second after they failed inline
    }
    retried = sorted((d.event.kind.value, d.route.channel) for d in await deliveries(handle))
    assert retried == [("active", "failing"), ("active", "silent"), ("expired", "failing"), ("expired", "silent")]


async def test_deliveries_hanging_on_a_channel_never_take_the_threads_that_end_grants(
    dev_env: WorkflowEnvironment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The lifecycle's activities (grant-store writes, provisioning) get as few threads as there are
    # grants here, and every delivery hangs on a channel that never answers: were deliveries run on
    # those threads, each grant's revocation would wait for a delivery to give up (HANG_S).
    monkeypatch.setenv(SECRET_ENV, SECRET)
    hang_s, grants = 25, 2
    with silent() as hole:
        channel = {"type": "webhook", "url": hole.url, "secret_env": SECRET_ENV, "timeout_s": hang_s}
        # Every delivery an activity (inline_ms 0): what is tested here is where activities send.
        notifications = {
            "channels": {"silent": channel},
            "routes": [{"audience": "requester", "to": ["silent"]}],
            "max_attempts": 1,
            "inline_ms": 0,
        }
        async with stack_with(dev_env, tmp_path, notifications, threads=grants) as (stack, _):
            alice = stack.auth("alice", "engineers")
            body = {"resource": LOGS, "action": "read", "duration": "2", "reason": "INC-501: Slack hangs"}
            ids = []
            for _ in range(grants):
                created = await stack.http.post("/v1/requests", json=body, headers=alice)
                assert created.status_code == 201 and created.json()["status"] == "active", created.text
                ids.append(created.json()["id"])

            # Every grant's "active" message is hanging on the channel.
            async def hanging() -> bool:
                return len(hole.attempts) == grants

            await wait_until(hanging, timeout=30, what="deliveries to hang")
            for rid in ids:

                async def ended(rid: str = rid) -> dict[str, Any] | None:
                    response = await stack.http.get(f"/v1/requests/{rid}", headers=alice)
                    assert response.status_code in (200, 503), response.text
                    view = response.json()
                    return view if view.get("status") == "expired" else None

                view = await wait_until(ended, timeout=60, what="the grant to expire")
                late = datetime.fromisoformat(view["ended_at"]) - datetime.fromisoformat(view["expires_at"])
                # On time, not after a hanging delivery gave up.
                assert late < timedelta(seconds=hang_s / 2), (rid, late)
            hole.hang_up()  # the workers stop without waiting out the hanging deliveries


async def test_a_slow_channel_is_held_back_from_inline_attempts(
    dev_env: WorkflowEnvironment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A receiver that answers, but in 1.2 s: more than half of inline_ms (2 s). The "active"
    # message is delivered inline; the channel is then held back, so "expired" goes as an
    # activity instead of holding the workflow task that ends the grant up another 1.2 s.
    monkeypatch.setenv(SECRET_ENV, SECRET)
    with receiving(SECRET, answer_after_s=1.2) as slow:
        notifications = {
            "channels": {"slow": {"type": "webhook", "url": slow.url, "secret_env": SECRET_ENV, "timeout_s": 10}},
            "routes": [{"audience": "requester", "to": ["slow"]}],
            "inline_ms": 2000,
        }
        async with stack_with(dev_env, tmp_path, notifications, threads=4) as (stack, metrics):
            alice = stack.auth("alice", "engineers")
            body = {"resource": LOGS, "action": "read", "duration": "2", "reason": "INC-502: slow hook"}
            created = await stack.http.post("/v1/requests", json=body, headers=alice)
            assert created.status_code == 201 and created.json()["status"] == "active", created.text
            handle = stack.client.get_workflow_handle_for(AccessRequestWorkflow.run, workflow_id(created.json()["id"]))
            assert (await handle.result()).status == "expired"
        inline = await inline_deliveries(handle)
        assert [(summary, done.failed, done.held_back) for summary, done in inline] == [
            ("notify requester via slow: active", [], []),  # delivered there, slowly
            ("notify requester via slow: expired", [], [0]),
        ]
        assert [(d.event.kind.value, d.route.channel) for d in await deliveries(handle)] == [("expired", "slow")]
        assert sorted(slow.attempts.values()) == [1, 1]  # each delivered once
        text = generate_latest(metrics.registry).decode()
        assert 'jit_notifications_deferred_total{channel="webhook",kind="expired",why="held back"} 1.0' in text
