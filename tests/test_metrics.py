"""The metrics an operator scrapes: the API's ``/metrics`` and the worker's exporter.

One scenario through the whole stack (API, in-process worker with its metrics
exporter on a free port, the Temporal dev server): an auto-approved grant that
expires on its own, and an approved grant that is revoked early. Both
endpoints must parse as Prometheus text and carry the project's metrics with
the values the scenario implies.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.grants import GrantActivities, IssueGrantInput
from core.grant_store import open_grant_store
from core.grants import SqliteGrantStore
from core.metrics import MetricsServer, WorkerMetrics, sdk_runtime, watch_gauges
from core.temporal import connect, workflow_id
from tests.conftest import Stack, free_port, make_settings, serve_api
from worker import build_worker
from workflows.access_request import AccessRequestWorkflow

ORDERS = "postgres:orders/public.orders"  # one approval from db-owners
LOGS = "k8s:prod/logs"  # auto-approved
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@dataclass
class MetricsStack:
    stack: Stack
    worker_metrics_url: str

    async def api_samples(self) -> Samples:
        response = await self.stack.http.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        return parse(response.text)

    async def worker_text(self) -> str:
        async with httpx.AsyncClient(timeout=10) as http:
            response = await http.get(self.worker_metrics_url)
        assert response.status_code == 200
        return response.text

    async def worker_samples(self) -> Samples:
        return parse(await self.worker_text())


def parse(text: str) -> Samples:
    """Every sample by (name, labels); raises if the text is not Prometheus text."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 30.0) -> None:
    """Poll ``check`` until it holds (the gauges refresh on their own schedule)."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f}s: {what}")
        await asyncio.sleep(0.1)


@pytest.fixture
async def metrics_stack(dev_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[MetricsStack]:
    """As worker.py runs it: the SDK's exporter on a loopback port, ours in front, gauges refreshed."""
    settings = make_settings(dev_env.client, tmp_path / "data")
    sdk_address = f"127.0.0.1:{free_port()}"
    client = await connect(settings, runtime=sdk_runtime(sdk_address))
    metrics = WorkerMetrics()
    server = MetricsServer(metrics.registry, "127.0.0.1", 0, sdk_address).start()
    gauges = asyncio.create_task(
        watch_gauges(client, open_grant_store(settings), settings.task_queue, metrics, interval_s=0.2)
    )
    try:
        with ThreadPoolExecutor(max_workers=8) as executor:
            async with build_worker(client, settings, executor, metrics):
                api, task, base_url = await serve_api(settings)
                try:
                    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
                        stack = Stack(settings, client, http, base_url, api.config.app)
                        yield MetricsStack(stack, f"http://127.0.0.1:{server.port}/metrics")
                finally:
                    api.should_exit = True
                    await task
    finally:
        gauges.cancel()
        server.close()


async def create(stack: Stack, resource: str, duration: str) -> dict:
    response = await stack.http.post(
        "/v1/requests",
        json={"resource": resource, "action": "read", "duration": duration, "reason": "INC-9: metrics"},
        headers=stack.auth("alice", "engineers"),
    )
    assert response.status_code == 201, response.text
    return response.json()


async def test_api_and_worker_metrics_after_a_scenario(metrics_stack: MetricsStack) -> None:
    ms = metrics_stack
    stack = ms.stack

    async def gauges_are(active: float, pending: float) -> bool:
        samples = await ms.worker_samples()
        return (value(samples, "jit_grants_active"), value(samples, "jit_approvals_pending")) == (active, pending)

    # 1. Auto-approved, two seconds long: it expires on its own.
    short = await create(stack, LOGS, "2")
    assert short["status"] == "active"
    handle = stack.client.get_workflow_handle_for(AccessRequestWorkflow.run, workflow_id(short["id"]))
    assert (await handle.result()).status == "expired"

    # 2. Needs bob's approval, then is revoked early.
    request = await create(stack, ORDERS, "PT15M")
    assert request["status"] == "pending"
    await eventually(lambda: gauges_are(active=0, pending=1), "one approval pending, no live grant")
    approved = await stack.http.post(
        f"/v1/requests/{request['id']}/approve", json={"comment": "ok"}, headers=stack.auth("bob", "db-owners")
    )
    assert approved.json()["status"] == "active", approved.text
    await eventually(lambda: gauges_are(active=1, pending=0), "one live grant, nothing pending")
    revoked = await stack.http.post(
        f"/v1/requests/{request['id']}/revoke", json={"reason": "done"}, headers=stack.auth("alice", "engineers")
    )
    assert revoked.json()["status"] == "revoked", revoked.text
    await eventually(lambda: gauges_are(active=0, pending=0), "no live grant left")

    # The worker: one revocation-lag observation per grant that ended (expiry + revoke).
    text = await ms.worker_text()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["jit_revocation_lag_seconds"].type == "histogram"
    assert families["jit_time_to_approve_seconds"].type == "histogram"
    assert families["jit_provisioner_failures"].type == "counter"
    assert families["jit_grants_active"].type == families["jit_approvals_pending"].type == "gauge"
    worker = parse(text)
    assert value(worker, "jit_revocation_lag_seconds_count") == 2
    lag = value(worker, "jit_revocation_lag_seconds_sum")
    assert lag is not None and lag >= 0
    # The early revoke counts as no lag at all: it is in the lowest bucket.
    assert (value(worker, "jit_revocation_lag_seconds_bucket", le="0.1") or 0) >= 1
    assert value(worker, "jit_revocation_lag_seconds_bucket", le="+Inf") == 2
    # Nothing failed to provision (the tests' catalog provisions nothing).
    assert not [s for s in families["jit_provisioner_failures"].samples if s.value]
    # The one approval that was needed; the auto-approved request is not an approval.
    ttl = value(worker, "jit_time_to_approve_seconds_count")
    assert ttl == 1
    # ... and the Temporal SDK's runtime metrics, on the same scrape.
    assert any(name.startswith("temporal_") for name in families), sorted(families)[:20]

    # The API: requests by route template and status, and their latency.
    api = await ms.api_samples()
    created = value(api, "jit_http_requests_total", method="POST", route="/v1/requests", status="201")
    assert created is not None and created >= 2
    route = "/v1/requests/{request_id}/approve"
    assert value(api, "jit_http_requests_total", method="POST", route=route, status="200") == 1
    assert value(api, "jit_http_request_duration_seconds_count", method="POST", route=route) == 1
    assert value(api, "jit_http_request_duration_seconds_count", method="POST", route="/v1/requests") == created
    routes = {dict(labels).get("route") for (name, labels) in api if name == "jit_http_requests_total"}
    assert not [r for r in routes if r and (request["id"] in r or short["id"] in r)], routes  # templates, not paths

    unknown = await stack.http.get(f"/no/such/{request['id']}")
    assert unknown.status_code == 404
    api = await ms.api_samples()
    assert value(api, "jit_http_requests_total", method="GET", route="<unmatched>", status="404") == 1


async def test_issue_grant_observes_time_to_approve(tmp_path: Path) -> None:
    """The activity's half of jit_time_to_approve_seconds: given when the request was filed and approved."""
    metrics = WorkerMetrics()
    grants = GrantActivities(SqliteGrantStore(tmp_path / "grants.sqlite3"), metrics)
    filed = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    approved = filed + timedelta(minutes=7)

    def issue(request_id: str, **times: datetime) -> None:
        ActivityEnvironment().run(
            grants.issue_grant,
            IssueGrantInput(
                request_id=request_id,
                requester="alice",
                resource=ORDERS,
                action="read",
                activated_at=approved,
                expires_at=approved + timedelta(minutes=15),
                **times,
            ),
        )

    issue("r1", requested_at=filed, approved_at=approved)
    issue("r1", requested_at=filed, approved_at=approved)  # a retry observes nothing twice
    issue("r2")  # auto-approved: nothing to observe
    samples = parse(generate_latest(metrics.registry).decode())
    assert value(samples, "jit_time_to_approve_seconds_count") == 1
    assert value(samples, "jit_time_to_approve_seconds_sum") == 420
