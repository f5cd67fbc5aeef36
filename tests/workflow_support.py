"""Helpers for the workflow tests: inputs, and a worker on a fresh task queue."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle

from core.models import AccessRequestInput, AccessRequestView, Actor, ResourcePolicy, StageSnapshot
from core.notify_models import Delivery, Dispatch, Dispatched, NotificationPlan, Route
from core.settings import Settings
from core.temporal import workflow_id
from worker import build_worker
from workflows.access_request import AccessRequestWorkflow

ALICE = Actor(sub="alice", groups=["engineers"])
BOB = Actor(sub="bob", groups=["db-owners"])
CAROL = Actor(sub="carol", groups=["db-owners"])
ADMIN = Actor(sub="root", groups=["jit-admins"])
DANA = Actor(sub="dana", groups=["data-owners"])
LEAD = Actor(sub="lee", groups=["data-leads"])
SRE = Actor(sub="sam", groups=["sre"])

# Every audience to the console, and a reminder even for the scenarios' grants of seconds.
CONSOLE_CONFIG = "channels: {console: {type: console}}\n"
NOTIFY_ALL = NotificationPlan(
    routes=[
        Route(channel="console", audience=a)
        for a in ("group:db-owners", "group:data-owners", "group:data-leads", "requester", "security", "operations")
    ],
    reminder_lead_s=1,
    reminder_min_grant_s=2,
    max_attempts=2,
    give_up_after_s=60,
)
# The same with inline first attempts, as a notifications file plans them now; the approvers'
# routes stay activities (as Slack's are), so the scenarios' histories have both kinds.
NOTIFY_INLINE = NOTIFY_ALL.model_copy(
    update={
        "inline_ms": 500,
        "routes": [r.model_copy(update={"inline": not r.audience.startswith("group:")}) for r in NOTIFY_ALL.routes],
    }
)


def request_input(
    *,
    approvals: int = 1,
    duration_s: int = 900,
    max_duration_s: int = 3600,
    approval_timeout_s: int = 3600,
    start_at: datetime | None = None,
    now: datetime | None = None,
    stages: list[StageSnapshot] | None = None,
    break_glass: bool = False,
    extension_approval: bool = False,
    notify: NotificationPlan | None = None,
) -> AccessRequestInput:
    return AccessRequestInput(
        id=str(uuid.uuid4()),
        requester=ALICE,
        resource="postgres:orders/public.orders",
        action="read",
        duration_s=duration_s,
        reason="debugging INC-1",
        ticket="INC-1",
        start_at=start_at,
        created_at=now or datetime.now(UTC),
        policy=ResourcePolicy(
            approvals_required=sum(st.approvals for st in stages) if stages else approvals,
            approver_groups=sorted({g for st in stages for g in st.groups})
            if stages
            else (["db-owners"] if approvals else []),
            max_duration_s=max_duration_s,
            approval_timeout_s=approval_timeout_s,
            admin_groups=["jit-admins"],
            stages=stages or [],
            break_glass=break_glass,
            review_groups=["db-owners"] if break_glass else [],
            extension_approval=extension_approval,
        ),
        policy_version="sha256:test",
        notify=notify,
    )


@asynccontextmanager
async def running_worker(client: Client, data_dir: Path) -> AsyncIterator[Settings]:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "notifications.yaml").write_text(CONSOLE_CONFIG)
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=data_dir,
        task_queue=f"wf-test-{uuid.uuid4()}",
        notifications_path=data_dir / "notifications.yaml",
    )
    with ThreadPoolExecutor(max_workers=4) as executor:
        async with build_worker(client, settings, executor):
            yield settings


async def start(
    client: Client, settings: Settings, req: AccessRequestInput
) -> WorkflowHandle[AccessRequestWorkflow, AccessRequestView]:
    return await client.start_workflow(
        AccessRequestWorkflow.run, req, id=workflow_id(req.id), task_queue=settings.task_queue
    )


async def deliveries(handle: WorkflowHandle) -> list[Delivery]:
    """Every notification the workflow sent as an activity, one per route, as its history (and
    Temporal UI) records them. Inline attempts (local activities) leave their summary only:
    see :func:`inline_deliveries`."""
    converter = handle._client.data_converter
    out: list[Delivery] = []
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs = event.activity_task_scheduled_event_attributes
            if attrs.activity_type.name == "deliver_notification":
                [dispatch] = await converter.decode(attrs.input.payloads, [Dispatch])
                out.extend(dispatch.deliveries())
    return out


async def inline_deliveries(handle: WorkflowHandle) -> list[tuple[str, Dispatched]]:
    """The inline first attempts (local activities) of the workflow: (summary, outcome) each,
    as Temporal UI shows them: ``notify requester via console, hook: active``."""
    converter = handle._client.data_converter
    out: list[tuple[str, Dispatched]] = []
    async for event in handle.fetch_history_events():
        attrs = event.marker_recorded_event_attributes
        if event.event_type != EventType.EVENT_TYPE_MARKER_RECORDED or "result" not in attrs.details:
            continue
        [data] = await converter.decode(attrs.details["data"].payloads, [dict])
        if data.get("activity_type") == "deliver_notification":
            [summary] = await converter.decode([event.user_metadata.summary], [str])
            [outcome] = await converter.decode(attrs.details["result"].payloads, [Dispatched])
            out.append((summary, outcome))
    return out
