"""Approval stages, escalation and break-glass review, on real servers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from core.models import AcknowledgeInput, ApproveInput, DenyInput, ExtendInput, RevokeInput, StageSnapshot, Status
from core.settings import Settings
from core.temporal import SA_BREAK_GLASS, SA_REVIEW
from tests.workflow_support import ALICE, BOB, CAROL, DANA, LEAD, request_input, running_worker, start
from workflows.access_request import AccessRequestWorkflow

TWO_STAGES = [
    StageSnapshot(name="owners", groups=["db-owners"], approvals=1),
    StageSnapshot(name="data", groups=["data-owners"], approvals=1, escalate_after_s=1800, escalate_to=["data-leads"]),
]


@pytest.fixture
async def worker(dev_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Settings]:
    async with running_worker(dev_env.client, tmp_path) as settings:
        yield settings


def refusal(e: WorkflowUpdateFailedError) -> str:
    assert isinstance(e.cause, ApplicationError)
    return f"{e.cause.type}: {e.cause.message}"


async def test_stages_run_in_order_each_from_its_own_group(dev_env: WorkflowEnvironment, worker: Settings) -> None:
    handle = await start(dev_env.client, worker, request_input(stages=TWO_STAGES))
    with pytest.raises(WorkflowUpdateFailedError) as too_early:
        await handle.execute_update(AccessRequestWorkflow.approve, ApproveInput(actor=DANA))
    assert "db-owners" in refusal(too_early.value)

    first = await handle.execute_update(AccessRequestWorkflow.approve, ApproveInput(actor=BOB))
    assert (first.status, first.stage, first.eligible_groups) == (Status.PENDING, "data", ["data-owners"])
    # A second db-owner cannot finish the second stage.
    with pytest.raises(WorkflowUpdateFailedError) as wrong_group:
        await handle.execute_update(AccessRequestWorkflow.approve, ApproveInput(actor=CAROL))
    assert refusal(wrong_group.value).startswith("Forbidden")

    done = await handle.execute_update(AccessRequestWorkflow.approve, ApproveInput(actor=DANA))
    assert done.status is Status.ACTIVE
    assert [(a.approver, a.stage) for a in done.approvals] == [("bob", "owners"), ("dana", "data")]
    # Both approvals are bound to the same, exact request.
    assert done.approvals[0].binding == done.approvals[1].binding is not None


async def test_one_person_never_counts_twice(dev_env: WorkflowEnvironment, worker: Settings) -> None:
    both = BOB.model_copy(update={"groups": ["db-owners", "data-owners"]})
    handle = await start(dev_env.client, worker, request_input(stages=TWO_STAGES))
    await handle.execute_update(AccessRequestWorkflow.approve, ApproveInput(actor=both))
    with pytest.raises(WorkflowUpdateFailedError) as again:
        await handle.execute_update(AccessRequestWorkflow.approve, ApproveInput(actor=both))
    assert refusal(again.value).startswith("Conflict")


async def test_break_glass_is_active_at_once_and_stays_open_until_reviewed(
    dev_env: WorkflowEnvironment, worker: Settings
) -> None:
    req = request_input(approvals=0, break_glass=True, duration_s=3600)
    handle = await start(dev_env.client, worker, req)
    active = await handle.execute_update(AccessRequestWorkflow.settled)
    assert active.status is Status.ACTIVE and active.break_glass and active.review_pending
    await handle.execute_update(AccessRequestWorkflow.revoke, RevokeInput(actor=ALICE, reason="incident over"))

    with pytest.raises(WorkflowUpdateFailedError) as own:
        await handle.execute_update(AccessRequestWorkflow.acknowledge, AcknowledgeInput(actor=ALICE))
    assert "own" in refusal(own.value)
    described = await handle.describe()
    assert described.typed_search_attributes.get(SA_REVIEW) == "pending"
    assert described.typed_search_attributes.get(SA_BREAK_GLASS) is True

    reviewed = await handle.execute_update(
        AccessRequestWorkflow.acknowledge, AcknowledgeInput(actor=BOB, comment="justified: INC-9")
    )
    assert reviewed.review is not None and reviewed.review.actor == "bob"
    result = await handle.result()
    assert result.status is Status.REVOKED and not result.review_pending


async def test_a_stage_escalates_when_nobody_decides(ts_env: WorkflowEnvironment, tmp_path: Path) -> None:
    async with running_worker(ts_env.client, tmp_path) as settings:
        handle = await start(ts_env.client, settings, request_input(stages=TWO_STAGES, approval_timeout_s=86400))
        await handle.execute_update(AccessRequestWorkflow.approve, ApproveInput(actor=BOB))
        with pytest.raises(WorkflowUpdateFailedError):
            await handle.execute_update(AccessRequestWorkflow.approve, ApproveInput(actor=LEAD))
        await ts_env.sleep(timedelta(minutes=31))
        escalated = await handle.query(AccessRequestWorkflow.get)
        assert escalated.escalated and "data-leads" in escalated.eligible_groups
        done = await handle.execute_update(AccessRequestWorkflow.approve, ApproveInput(actor=LEAD))
        assert done.status is Status.ACTIVE
        await handle.execute_update(AccessRequestWorkflow.revoke, RevokeInput(actor=ALICE, reason="done"))
        assert (await handle.result()).status is Status.REVOKED


async def test_extension_past_the_approval_needs_approval_again(dev_env: WorkflowEnvironment, worker: Settings) -> None:
    req = request_input(duration_s=900, max_duration_s=3600)
    req.policy.extension_approval = True
    handle = await start(dev_env.client, worker, req)
    active = await handle.execute_update(AccessRequestWorkflow.approve, ApproveInput(actor=BOB))
    asked = await handle.execute_update(
        AccessRequestWorkflow.extend, ExtendInput(actor=ALICE, duration_s=900, reason="migration runs long")
    )
    # Nothing moves until an approver agrees; the requester cannot be that approver.
    assert asked.expires_at == active.expires_at
    assert asked.pending_extension is not None and asked.pending_extension.duration_s == 900
    with pytest.raises(WorkflowUpdateFailedError) as own:
        await handle.execute_update(AccessRequestWorkflow.approve, ApproveInput(actor=ALICE))
    assert "own extension" in refusal(own.value)

    extended = await handle.execute_update(AccessRequestWorkflow.approve, ApproveInput(actor=CAROL))
    assert extended.pending_extension is None
    assert extended.expires_at is not None and active.expires_at is not None
    assert (extended.expires_at - active.expires_at).total_seconds() == 900

    await handle.execute_update(AccessRequestWorkflow.extend, ExtendInput(actor=ALICE, duration_s=600, reason="more"))
    refused = await handle.execute_update(AccessRequestWorkflow.deny, DenyInput(actor=BOB, reason="enough"))
    assert refused.pending_extension is None and refused.expires_at == extended.expires_at
    assert refused.status is Status.ACTIVE
