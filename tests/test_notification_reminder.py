"""The expiry reminder, on the time-skipping test server: an hour passes in milliseconds."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from core.models import ExtendInput, Status
from core.notify_models import EventKind, NotificationPlan, Route
from tests.workflow_support import ALICE, deliveries, request_input, running_worker, start
from workflows.access_request import AccessRequestWorkflow

TO_REQUESTER = NotificationPlan(routes=[Route(channel="console", audience="requester")])  # default lead: 5 minutes


async def test_reminder_comes_five_minutes_before_the_end(ts_env: WorkflowEnvironment, tmp_path: Path) -> None:
    async with running_worker(ts_env.client, tmp_path) as settings:
        req = request_input(approvals=0, duration_s=3600, max_duration_s=4 * 3600, notify=TO_REQUESTER)
        handle = await start(ts_env.client, settings, req)
        result = await handle.result()
    assert result.status is Status.EXPIRED and result.expires_at is not None
    sent = await deliveries(handle)
    assert [d.event.kind for d in sent] == [EventKind.ACTIVE, EventKind.EXPIRING, EventKind.EXPIRED]
    reminder = sent[1].event
    assert reminder.expires_at == result.expires_at
    assert result.expires_at - timedelta(minutes=5) <= reminder.at < result.expires_at - timedelta(minutes=4)


async def test_no_reminder_for_a_short_grant(ts_env: WorkflowEnvironment, tmp_path: Path) -> None:
    async with running_worker(ts_env.client, tmp_path) as settings:
        req = request_input(approvals=0, duration_s=10 * 60, notify=TO_REQUESTER)
        handle = await start(ts_env.client, settings, req)
        assert (await handle.result()).status is Status.EXPIRED
    assert [d.event.kind for d in await deliveries(handle)] == [EventKind.ACTIVE, EventKind.EXPIRED]


async def test_an_extension_moves_the_reminder(ts_env: WorkflowEnvironment, tmp_path: Path) -> None:
    async with running_worker(ts_env.client, tmp_path) as settings:
        req = request_input(approvals=0, duration_s=3600, max_duration_s=4 * 3600, notify=TO_REQUESTER)
        handle = await start(ts_env.client, settings, req)
        await handle.execute_update(AccessRequestWorkflow.settled)
        extended = await handle.execute_update(
            AccessRequestWorkflow.extend, ExtendInput(actor=ALICE, duration_s=3600, reason="migration runs long")
        )
        result = await handle.result()
    assert result.status is Status.EXPIRED and result.expires_at == extended.expires_at
    reminders = [d.event for d in await deliveries(handle) if d.event.kind is EventKind.EXPIRING]
    # One reminder, for the extended end: none for the end that no longer comes.
    assert [r.expires_at for r in reminders] == [result.expires_at]
    assert reminders[0].at >= result.expires_at - timedelta(minutes=5)
