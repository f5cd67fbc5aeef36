"""Updates on a real dev server: who may approve, deny, cancel, revoke, extend."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.audit import AuditActivities
from activities.clock import read_clock
from activities.grants import GrantActivities, IssueGrantInput
from core.audit_log import AuditLog
from core.grant_store import open_grant_store
from core.models import (
    ApproveInput,
    CancelInput,
    DenyInput,
    ExtendInput,
    RevokeInput,
    Status,
)
from core.settings import Settings
from tests.workflow_support import ADMIN, ALICE, BOB, CAROL, request_input, running_worker, start
from workflows.access_request import AccessRequestWorkflow


@pytest.fixture
async def worker(dev_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Settings]:
    async with running_worker(dev_env.client, tmp_path) as settings:
        yield settings


def failure_type(e: WorkflowUpdateFailedError) -> str | None:
    cause = e.cause
    return cause.type if isinstance(cause, ApplicationError) else None


async def test_approval_by_an_approver_activates(dev_env: WorkflowEnvironment, worker: Settings) -> None:
    handle = await start(dev_env.client, worker, request_input())
    view = await handle.execute_update(AccessRequestWorkflow.approve, ApproveInput(actor=BOB, comment="ok"))
    assert view.status is Status.ACTIVE
    assert view.expires_at is not None and view.activated_at is not None
    assert open_grant_store(worker).lookup(view.id) is not None


async def test_requester_cannot_approve_own_request(dev_env: WorkflowEnvironment, worker: Settings) -> None:
    handle = await start(dev_env.client, worker, request_input())
    alice_approver = ALICE.model_copy(update={"groups": ["db-owners"]})
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(AccessRequestWorkflow.approve, ApproveInput(actor=alice_approver))
    assert failure_type(refused.value) == "Forbidden"
    assert (await handle.query(AccessRequestWorkflow.get)).status is Status.PENDING


async def test_two_approvals_need_two_people(dev_env: WorkflowEnvironment, worker: Settings) -> None:
    handle = await start(dev_env.client, worker, request_input(approvals=2))
    first = await handle.execute_update(AccessRequestWorkflow.approve, ApproveInput(actor=BOB))
    assert first.status is Status.PENDING
    with pytest.raises(WorkflowUpdateFailedError) as twice:
        await handle.execute_update(AccessRequestWorkflow.approve, ApproveInput(actor=BOB))
    assert failure_type(twice.value) == "Conflict"
    second = await handle.execute_update(AccessRequestWorkflow.approve, ApproveInput(actor=CAROL))
    assert second.status is Status.ACTIVE
    assert [a.approver for a in second.approvals] == ["bob", "carol"]


async def test_rejected_updates_leave_no_trace_in_history(dev_env: WorkflowEnvironment, worker: Settings) -> None:
    handle = await start(dev_env.client, worker, request_input())
    outsider = ALICE.model_copy(update={"sub": "mallory"})
    for attempt in (ApproveInput(actor=ALICE), ApproveInput(actor=outsider)):
        with pytest.raises(WorkflowUpdateFailedError):
            await handle.execute_update(AccessRequestWorkflow.approve, attempt)
    await handle.execute_update(AccessRequestWorkflow.deny, DenyInput(actor=BOB, reason="not needed"))
    await handle.result()
    accepted = [
        e
        async for e in handle.fetch_history_events()
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
    ]
    assert len(accepted) == 1  # only the deny


async def test_deny_ends_the_request_without_a_grant(dev_env: WorkflowEnvironment, worker: Settings) -> None:
    req = request_input()
    handle = await start(dev_env.client, worker, req)
    await handle.execute_update(AccessRequestWorkflow.deny, DenyInput(actor=BOB, reason="use the replica"))
    result = await handle.result()
    assert result.status is Status.DENIED
    assert result.denial is not None and (result.denial.actor, result.denial.reason) == ("bob", "use the replica")
    assert open_grant_store(worker).lookup(req.id) is None


async def test_only_the_requester_cancels(dev_env: WorkflowEnvironment, worker: Settings) -> None:
    handle = await start(dev_env.client, worker, request_input())
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(AccessRequestWorkflow.cancel, CancelInput(actor=BOB))
    assert failure_type(refused.value) == "Forbidden"
    await handle.execute_update(AccessRequestWorkflow.cancel, CancelInput(actor=ALICE, reason="fixed it"))
    assert (await handle.result()).status is Status.CANCELLED


async def test_revoke_mid_grant_ends_access_at_once(dev_env: WorkflowEnvironment, worker: Settings) -> None:
    req = request_input(approvals=0, duration_s=3600)
    handle = await start(dev_env.client, worker, req)
    assert (await handle.execute_update(AccessRequestWorkflow.settled)).status is Status.ACTIVE
    # The grant has an hour left; the revoke answers once access is gone.
    view = await handle.execute_update(AccessRequestWorkflow.revoke, RevokeInput(actor=ALICE, reason="done"))
    assert view.status is Status.REVOKED
    assert (await handle.result()).status is Status.REVOKED
    grant = open_grant_store(worker).lookup(req.id)
    assert grant is not None and grant.revoked_at is not None


async def test_an_admin_may_revoke_someone_elses_grant(dev_env: WorkflowEnvironment, worker: Settings) -> None:
    handle = await start(dev_env.client, worker, request_input(approvals=0))
    await handle.execute_update(AccessRequestWorkflow.settled)
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(AccessRequestWorkflow.revoke, RevokeInput(actor=BOB, reason="mine now"))
    assert failure_type(refused.value) == "Forbidden"
    view = await handle.execute_update(AccessRequestWorkflow.revoke, RevokeInput(actor=ADMIN, reason="incident over"))
    assert view.status is Status.REVOKED and view.revocation is not None and view.revocation.actor == "root"


async def test_extend_moves_expiry_within_the_maximum(dev_env: WorkflowEnvironment, worker: Settings) -> None:
    req = request_input(approvals=0, duration_s=900, max_duration_s=3600)
    handle = await start(dev_env.client, worker, req)
    active = await handle.execute_update(AccessRequestWorkflow.settled)
    assert active.expires_at is not None
    extended = await handle.execute_update(
        AccessRequestWorkflow.extend, ExtendInput(actor=ALICE, duration_s=1800, reason="migration runs long")
    )
    assert extended.expires_at is not None
    assert (extended.expires_at - active.expires_at).total_seconds() == 1800
    grant = open_grant_store(worker).lookup(req.id)
    assert grant is not None and grant.expires_at == extended.expires_at

    with pytest.raises(WorkflowUpdateFailedError) as beyond:
        await handle.execute_update(
            AccessRequestWorkflow.extend, ExtendInput(actor=ALICE, duration_s=1800, reason="and more")
        )
    assert failure_type(beyond.value) == "InvalidArgument"
    assert "maximum" in str(beyond.value.cause)
    still = await handle.query(AccessRequestWorkflow.get)
    assert still.expires_at == extended.expires_at


async def test_failed_provisioning_rolls_back_and_fails(dev_env: WorkflowEnvironment, tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path, task_queue=f"wf-fail-{tmp_path.name}")  # type: ignore[call-arg]
    real = GrantActivities(open_grant_store(settings))
    audit = AuditActivities(AuditLog(settings.audit_log_path))

    @activity.defn(name="issue_grant")
    def broken_issue_grant(input: IssueGrantInput) -> None:
        raise ApplicationError("database refused the grant", non_retryable=True)

    with ThreadPoolExecutor(max_workers=2) as executor:
        async with Worker(
            dev_env.client,
            task_queue=settings.task_queue,
            workflows=[AccessRequestWorkflow],
            activities=[broken_issue_grant, real.extend_grant, real.revoke_grant, audit.append_audit, read_clock],
            activity_executor=executor,
        ):
            req = request_input(approvals=0)
            handle = await start(dev_env.client, settings, req)
            result = await handle.result()
    assert result.status is Status.FAILED
    assert result.failure is not None and "database refused the grant" in result.failure
    # Rolled back: a tombstone means a late retry can never make it live.
    grant = open_grant_store(settings).lookup(req.id)
    assert grant is not None and grant.revoked_at is not None


async def test_an_extend_racing_a_revoke_is_told_the_truth(dev_env: WorkflowEnvironment, worker: Settings) -> None:
    # Whichever lands first, the extend's caller learns whether it took effect:
    # a 200 is an extension in the final record, anything else is a 409.
    for _ in range(5):
        handle = await start(dev_env.client, worker, request_input(approvals=0, duration_s=900))
        await handle.execute_update(AccessRequestWorkflow.settled)
        extend, revoke = await asyncio.gather(
            handle.execute_update(AccessRequestWorkflow.extend, ExtendInput(actor=ALICE, duration_s=60, reason="x")),
            handle.execute_update(AccessRequestWorkflow.revoke, RevokeInput(actor=ALICE, reason="done")),
            return_exceptions=True,
        )
        assert not isinstance(revoke, BaseException)
        final = await handle.result()
        assert final.status is Status.REVOKED
        if isinstance(extend, BaseException):
            # Refused by the workflow (409 at the API), or, sent as the workflow closed, aborted by
            # the server (NOT_FOUND: the API's 409 "request has already ended" too).
            refused = isinstance(extend, WorkflowUpdateFailedError) and failure_type(extend) == "Conflict"
            aborted = isinstance(extend, RPCError) and extend.status == RPCStatusCode.NOT_FOUND
            assert refused or aborted, repr(extend)
            assert final.extensions == []
        else:
            assert [e.duration_s for e in final.extensions] == [60]


async def test_temporal_ui_shows_the_live_state_as_current_details(
    dev_env: WorkflowEnvironment, worker: Settings
) -> None:
    handle = await start(dev_env.client, worker, request_input(approvals=1))

    async def details() -> str:
        metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
        return metadata.current_details

    assert "**pending**" in await details() and "0 of 1 from db-owners" in await details()
    await handle.execute_update(AccessRequestWorkflow.approve, ApproveInput(actor=BOB))
    shown = await details()
    assert "**active**" in shown and "Approved by bob" in shown and "Expires " in shown
