"""Reads at the moment a grant expires change nothing: one grant timer, revoked once, every history replays.

A query on a workflow the worker does not hold in its cache replays the whole
history first, at a moment of its own: between a timer firing and the workflow
task that handles it, the replay sees the firing before the clock moves. The
grant's commands must not depend on that (../shared/STYLE.md, "Determinism
covers queries too"). Two ways to be out of cache: the cache off
(a cache smaller than the running requests, one slot always kept free for a query: worker.py), and a worker restarted while grants expire.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from core.grant_store import open_grant_store
from core.models import AccessRequestView, Status
from core.settings import Settings
from core.temporal import DATA_CONVERTER
from tests.workflow_support import request_input, start
from worker import build_worker
from workflows.access_request import AccessRequestWorkflow

GRANTS = 6
DURATIONS_S = (2, 3)
# How long each worker lives in the restart test: the fault injected, not a wait for a result.
RESTART_EVERY_S = 0.7


@asynccontextmanager
async def worker(client: Client, settings: Settings) -> AsyncIterator[None]:
    with ThreadPoolExecutor(max_workers=8) as executor:
        async with build_worker(client, settings, executor):
            yield


async def hammer(handle: WorkflowHandle[AccessRequestWorkflow, AccessRequestView], done: asyncio.Event) -> int:
    """Query ``handle`` back to back until ``done``; how many answered."""
    answered = 0
    while not done.is_set():
        try:
            await handle.query(AccessRequestWorkflow.get)
            answered += 1
        except RPCError:
            pass  # no worker for a moment (restart), or the run just closed
    return answered


async def grant_timers(handle: WorkflowHandle[AccessRequestWorkflow, AccessRequestView]) -> int:
    return len(
        [
            e
            async for e in handle.fetch_history_events()
            if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED
            and "grant until" in DATA_CONVERTER.payload_converter.from_payload(e.user_metadata.summary, str)
        ]
    )


async def check(
    client: Client, settings: Settings, handles: list[WorkflowHandle[AccessRequestWorkflow, AccessRequestView]]
) -> None:
    store = open_grant_store(settings)
    replayer = Replayer(workflows=[AccessRequestWorkflow], data_converter=DATA_CONVERTER)
    for handle in handles:
        view = await asyncio.wait_for(handle.result(), 60)
        assert view.status is Status.EXPIRED, view.failure
        assert view.activated_at is not None and view.expires_at is not None
        # One timer per grant: a second one would hold access open for a second full length.
        assert await grant_timers(handle) == 1
        # Revoked, by that timer (how late, under kills, is the chaos run's measure: bench/chaos.py).
        row = store.lookup(view.id)
        assert row is not None and row.revoked_at is not None
        await replayer.replay_workflow(await handle.fetch_history())


async def run_grants(
    client: Client, settings: Settings
) -> list[WorkflowHandle[AccessRequestWorkflow, AccessRequestView]]:
    handles = []
    for i in range(GRANTS):
        req = request_input(approvals=0, duration_s=DURATIONS_S[i % len(DURATIONS_S)])
        handles.append(await start(client, settings, req))
    return handles


def settings_for(client: Client, tmp_path: Path, cached: int, **more: Any) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path / "data",
        task_queue=f"query-expiry-{uuid.uuid4()}",
        worker_max_cached_workflows=cached,
        **more,
    )


async def test_queries_at_expiry_with_a_cache_smaller_than_the_grants(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    client = dev_env.client
    settings = settings_for(client, tmp_path, cached=3)
    async with worker(client, settings):
        handles = await run_grants(client, settings)
        done = asyncio.Event()
        readers = [asyncio.create_task(hammer(h, done)) for h in handles for _ in range(3)]
        try:
            await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), 60)
        finally:
            done.set()
            answered = await asyncio.gather(*readers)
        assert sum(answered) > 0
        await check(client, settings, handles)


async def test_queries_at_expiry_across_worker_restarts(dev_env: WorkflowEnvironment, tmp_path: Path) -> None:
    client = dev_env.client
    # Restarts are the fault injected here, forty of them: a task left on a stopped worker's
    # sticky queue waits 1 s for it, not the default 10 s (as in the chaos stack).
    settings = settings_for(client, tmp_path, cached=1000, worker_sticky_timeout_s=1)
    async with worker(client, settings):
        handles = await run_grants(client, settings)
        for h in handles:
            assert (await h.execute_update(AccessRequestWorkflow.settled)).status is Status.ACTIVE
    done = asyncio.Event()
    readers = [asyncio.create_task(hammer(h, done)) for h in handles for _ in range(3)]
    results = asyncio.gather(*(h.result() for h in handles))
    try:
        # Each new worker starts with an empty cache, so the grants that expire
        # during its short life are met out of cache, many first by a query.
        for _ in range(40):
            async with worker(client, settings):
                finished, _ = await asyncio.wait([results], timeout=RESTART_EVERY_S)
            if finished:
                break
    finally:
        done.set()
        await asyncio.gather(*readers)
    assert results.done(), "not every grant ended"
    await check(client, settings, handles)
