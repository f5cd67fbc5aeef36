"""Who hears what: stages, escalation, extensions and break-glass, as the workflow's history records them."""

from __future__ import annotations

from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from core.models import AcknowledgeInput, ApproveInput, DenyInput, ExtendInput, StageSnapshot, Status
from core.notify_models import EventKind
from tests.workflow_support import (
    ALICE,
    BOB,
    CAROL,
    DANA,
    LEAD,
    NOTIFY_ALL,
    deliveries,
    request_input,
    running_worker,
    start,
)
from workflows.access_request import AccessRequestWorkflow

STAGES = [
    StageSnapshot(name="owners", groups=["db-owners"]),
    StageSnapshot(name="data", groups=["data-owners"], escalate_after_s=1800, escalate_to=["data-leads"]),
]


def told(sent: list, kind: EventKind) -> list[str]:
    return [d.route.audience for d in sent if d.event.kind is kind]


async def test_each_stage_then_its_escalation_hear_in_turn(ts_env: WorkflowEnvironment, tmp_path: Path) -> None:
    async with running_worker(ts_env.client, tmp_path) as settings:
        handle = await start(ts_env.client, settings, request_input(stages=STAGES, duration_s=600, notify=NOTIFY_ALL))
        await handle.execute_update(AccessRequestWorkflow.settled)  # filed: the first stage was told
        await handle.execute_update(AccessRequestWorkflow.approve, ApproveInput(actor=BOB))
        # Nobody in data-owners answers for 30 minutes: data-leads are asked too, and one approves.
        for _ in range(6):  # workflow time, skipped: an hour at most
            if (await handle.query(AccessRequestWorkflow.get)).escalated:
                break
            await ts_env.sleep(600)
        await handle.execute_update(AccessRequestWorkflow.approve, ApproveInput(actor=LEAD))
        assert (await handle.result()).status is Status.EXPIRED
    sent = await deliveries(handle)
    assert told(sent, EventKind.FILED) == ["group:db-owners", "group:data-owners"]
    assert told(sent, EventKind.ESCALATED) == ["group:data-leads"]
    assert told(sent, EventKind.APPROVED) == []  # active follows at once, with the approvals
    assert told(sent, EventKind.ACTIVE) == ["requester"]
    assert told(sent, EventKind.EXPIRED) == ["requester"]
    assert not told(sent, EventKind.DENIED)
    active = next(d.event for d in sent if d.event.kind is EventKind.ACTIVE)
    assert active.approvals == ["bob", "lee"]


async def test_an_approval_before_the_first_step_tells_the_next_stage_once(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with running_worker(ts_env.client, tmp_path) as settings:
        handle = await start(ts_env.client, settings, request_input(stages=STAGES, duration_s=600, notify=NOTIFY_ALL))
        await handle.execute_update(AccessRequestWorkflow.approve, ApproveInput(actor=BOB))
        await handle.execute_update(AccessRequestWorkflow.approve, ApproveInput(actor=DANA))
        await handle.result()
    filed = told(await deliveries(handle), EventKind.FILED)
    assert filed.count("group:data-owners") == 1
    assert filed.count("group:db-owners") <= 1  # none when bob's approval came first


async def test_an_extension_waits_on_its_approvers_and_the_requester_hears_the_answer(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with running_worker(ts_env.client, tmp_path) as settings:
        req = request_input(duration_s=600, max_duration_s=3600, extension_approval=True, notify=NOTIFY_ALL)
        handle = await start(ts_env.client, settings, req)
        await handle.execute_update(AccessRequestWorkflow.approve, ApproveInput(actor=BOB))
        await handle.execute_update(AccessRequestWorkflow.extend, ExtendInput(actor=ALICE, duration_s=600, reason="x"))
        await handle.execute_update(AccessRequestWorkflow.deny, DenyInput(actor=CAROL, reason="finish tomorrow"))
        await handle.execute_update(AccessRequestWorkflow.extend, ExtendInput(actor=ALICE, duration_s=300, reason="y"))
        await handle.execute_update(AccessRequestWorkflow.approve, ApproveInput(actor=CAROL))
        await handle.result()
    sent = await deliveries(handle)
    assert told(sent, EventKind.EXTENSION_PENDING) == ["group:db-owners", "group:db-owners"]
    denied = [d.event for d in sent if d.event.kind is EventKind.EXTENSION_DENIED]
    assert [(e.actor, e.detail) for e in denied] == [("carol", "finish tomorrow")]
    extended = [d.event for d in sent if d.event.kind is EventKind.EXTENDED]
    assert [(e.actor, e.extension_s) for e in extended] == [("carol", 300)]


async def test_break_glass_tells_security_at_once(ts_env: WorkflowEnvironment, tmp_path: Path) -> None:
    async with running_worker(ts_env.client, tmp_path) as settings:
        req = request_input(approvals=0, break_glass=True, duration_s=600, notify=NOTIFY_ALL)
        handle = await start(ts_env.client, settings, req)
        await handle.execute_update(AccessRequestWorkflow.settled)
        await handle.execute_update(AccessRequestWorkflow.acknowledge, AcknowledgeInput(actor=BOB))
        await handle.result()
    sent = await deliveries(handle)
    assert told(sent, EventKind.BREAK_GLASS) == ["security"]
    assert sent[0].event.kind is EventKind.BREAK_GLASS  # before anything else


async def test_a_route_takes_only_the_events_it_names(ts_env: WorkflowEnvironment, tmp_path: Path) -> None:
    from core.models import ResourcePolicy
    from core.notify_config import NotificationConfig

    config = NotificationConfig.model_validate(
        {
            "channels": {"console": {"type": "console"}},
            "routes": [
                {"audience": "requester", "events": ["expired", "revoked"], "to": ["console"]},
                {"audience": "approvers", "groups": ["db-owners"], "events": ["filed"], "to": ["console"]},
            ],
            "inline_ms": 0,  # every delivery an activity, whose input history keeps for deliveries()
        }
    )
    policy = ResourcePolicy(
        approvals_required=1, approver_groups=["db-owners"], max_duration_s=3600, approval_timeout_s=3600
    )
    plan = config.plan(requester="alice", resource="r", environment=None, policy=policy, public_url=None)
    async with running_worker(ts_env.client, tmp_path) as settings:
        handle = await start(ts_env.client, settings, request_input(duration_s=600, notify=plan))
        await handle.execute_update(AccessRequestWorkflow.settled)
        await handle.execute_update(AccessRequestWorkflow.approve, ApproveInput(actor=BOB))
        await handle.result()
    sent = [(d.route.audience, d.event.kind) for d in await deliveries(handle)]
    assert sent == [("group:db-owners", EventKind.FILED), ("requester", EventKind.EXPIRED)]  # no "active"


def test_console_and_webhook_are_tried_inline_first_slack_and_email_never() -> None:
    from core.models import ResourcePolicy
    from core.notify_config import NotificationConfig

    def inline_by_channel(**extra: object) -> dict[str, object]:
        config = NotificationConfig.model_validate(
            {
                "channels": {
                    "console": {"type": "console"},
                    "hook": {"type": "webhook", "url": "https://hooks.example/jit", "secret_env": "HOOK_SECRET"},
                    "slack": {"type": "slack"},
                    "mail": {"type": "email", "host": "smtp.example", "sender": "jit@example.com"},
                },
                "routes": [
                    {
                        "audience": "security",
                        "to": [
                            "console",
                            "hook",
                            {"channel": "slack", "target": "#security"},
                            {"channel": "mail", "target": "security@example.com"},
                        ],
                    }
                ],
                **extra,
            }
        )
        policy = ResourcePolicy(approvals_required=0, approver_groups=[], max_duration_s=3600, approval_timeout_s=60)
        plan = config.plan(requester="alice", resource="r", environment=None, policy=policy, public_url=None)
        return {r.channel: r.inline for r in plan.routes} | {"inline_ms": plan.inline_ms}

    assert inline_by_channel() == {"console": True, "hook": True, "slack": False, "mail": False, "inline_ms": 500}
    # inline_ms: 0 makes every delivery an activity, as before inline attempts.
    off = {"console": False, "hook": False, "slack": False, "mail": False, "inline_ms": 0}
    assert inline_by_channel(inline_ms=0) == off
