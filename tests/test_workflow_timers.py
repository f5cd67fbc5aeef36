"""Long timers on the time-skipping test server: hours pass in milliseconds."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from core.grant_store import open_grant_store
from core.models import ApproveInput, Status
from tests.workflow_support import BOB, request_input, running_worker, start
from workflows.access_request import AccessRequestWorkflow


async def test_two_hour_grant_expires_and_is_revoked(ts_env: WorkflowEnvironment, tmp_path: Path) -> None:
    async with running_worker(ts_env.client, tmp_path) as settings:
        req = request_input(approvals=0, duration_s=2 * 3600, max_duration_s=4 * 3600)
        handle = await start(ts_env.client, settings, req)
        result = await handle.result()
    assert result.status is Status.EXPIRED
    assert result.activated_at is not None and result.expires_at is not None
    assert result.expires_at - result.activated_at == timedelta(hours=2)
    # The workflow really held the grant for two hours (of workflow time).
    assert result.ended_at is not None and result.ended_at >= result.expires_at
    grant = open_grant_store(settings).lookup(req.id)
    assert grant is not None and grant.revoked_at is not None


async def test_nobody_decides_in_time(ts_env: WorkflowEnvironment, tmp_path: Path) -> None:
    async with running_worker(ts_env.client, tmp_path) as settings:
        req = request_input(approvals=1, approval_timeout_s=24 * 3600)
        handle = await start(ts_env.client, settings, req)
        result = await handle.result()
    assert result.status is Status.TIMED_OUT
    assert result.ended_at is not None and result.ended_at - result.created_at >= timedelta(hours=24)
    # Never provisioned, so nothing is in the grant store.
    assert open_grant_store(settings).lookup(req.id) is None


async def test_scheduled_start_waits_then_grants(ts_env: WorkflowEnvironment, tmp_path: Path) -> None:
    now = await ts_env.get_current_time()
    async with running_worker(ts_env.client, tmp_path) as settings:
        req = request_input(approvals=0, duration_s=3600, start_at=now + timedelta(hours=8), now=now)
        handle = await start(ts_env.client, settings, req)
        result = await handle.result()
    assert result.status is Status.EXPIRED
    assert result.activated_at is not None and result.activated_at >= now + timedelta(hours=8)
    # The clock started at activation, not at filing.
    assert result.expires_at == result.activated_at + timedelta(hours=1)


async def test_approved_grant_runs_its_full_time(ts_env: WorkflowEnvironment, tmp_path: Path) -> None:
    async with running_worker(ts_env.client, tmp_path) as settings:
        req = request_input(approvals=1, duration_s=3 * 3600, max_duration_s=4 * 3600)
        handle = await start(ts_env.client, settings, req)
        approved = await handle.execute_update(AccessRequestWorkflow.approve, ApproveInput(actor=BOB))
        assert approved.status is Status.ACTIVE
        result = await handle.result()
    assert result.status is Status.EXPIRED
    assert result.expires_at is not None and result.activated_at is not None
    assert result.expires_at - result.activated_at == timedelta(hours=3)
