"""A revocation that keeps failing never gives up, and shows an alert meanwhile."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowUpdateStage
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.audit import AuditActivities
from activities.clock import read_clock
from activities.grants import GrantActivities
from activities.notify import NotifyActivities
from activities.provisioners.base import GrantOutcome, GrantSpec, RevokeOutcome
from activities.provisioning import DeprovisionInput
from core.audit_log import AuditLog
from core.grant_store import open_grant_store
from core.models import RevokeInput, Status
from core.notify_config import NotificationConfig
from core.notify_models import EventKind, NotificationPlan, Route
from core.settings import Settings
from tests.workflow_support import ALICE, deliveries, request_input, start
from workflows.access_request import AccessRequestWorkflow


async def test_failing_revocation_raises_an_alert_and_keeps_retrying(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path, task_queue=f"alert-{tmp_path.name}")  # type: ignore[call-arg]
    grants = GrantActivities(open_grant_store(settings))
    audit = AuditActivities(AuditLog(settings.audit_log_path))
    attempts: list[str] = []

    # The target system, at the protocol of our activities: the first three
    # rounds of revocation fail for good (a refused credential, say).
    @activity.defn(name="provision")
    def provision(spec: GrantSpec) -> GrantOutcome:
        return GrantOutcome(request_id=spec.request_id, provisioner="stub", expires_at=spec.expires_at)

    @activity.defn(name="deprovision")
    def deprovision(input: DeprovisionInput) -> RevokeOutcome:
        attempts.append(input.spec.request_id)
        if len(attempts) <= 3:
            raise ApplicationError("target refused the revoke", non_retryable=True)
        return RevokeOutcome(request_id=input.spec.request_id, provisioner="stub")

    # Operations hear of the alert when it is raised and when it clears.
    notify = NotifyActivities(NotificationConfig.model_validate({"channels": {"console": {"type": "console"}}}))
    to_ops = NotificationPlan(routes=[Route(channel="console", audience="operations")])
    req = request_input(approvals=0, duration_s=3600, notify=to_ops)
    req.policy.provisioner = {"type": "stub"}
    with ThreadPoolExecutor(max_workers=4) as executor:
        async with Worker(
            ts_env.client,
            task_queue=settings.task_queue,
            workflows=[AccessRequestWorkflow],
            activities=[
                grants.issue_grant,
                grants.revoke_grant,
                audit.append_audit,
                provision,
                deprovision,
                read_clock,
                notify.deliver,
            ],
            activity_executor=executor,
        ):
            handle = await start(ts_env.client, settings, req)
            await handle.execute_update(AccessRequestWorkflow.settled)
            await handle.start_update(
                AccessRequestWorkflow.revoke,
                RevokeInput(actor=ALICE, reason="done"),
                wait_for_stage=WorkflowUpdateStage.ACCEPTED,
            )
            result = await handle.result()

    assert result.status is Status.REVOKED
    assert len(attempts) == 4  # three failed rounds, then the one that held
    assert result.alert is None and result.revocation_verified_at is not None
    # Meanwhile the request carried JitAlert = "revoke_failing" (Temporal UI can filter on it).
    alerts = [
        e.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields.get("JitAlert")
        async for e in handle.fetch_history_events()
        if e.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES
    ]
    raised = [a for a in alerts if a is not None and b"revoke_failing" in a.data]
    assert len(raised) == 1
    told = [d.event for d in await deliveries(handle)]
    assert [e.kind for e in told] == [EventKind.ALERT_RAISED, EventKind.ALERT_CLEARED]
    assert told[0].detail is not None and "target refused the revoke" in told[0].detail
    # The grant died at once, before the target let go: tokens stopped working.
    grant = open_grant_store(settings).lookup(req.id)
    assert grant is not None and grant.revoked_at is not None
