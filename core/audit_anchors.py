"""Anchors of the audit log: the chain's head, kept in Temporal where the log's writer cannot rewrite it.

- ``ensure_anchor_schedule``: at worker start, create or update (idempotent)
  the Temporal Schedule that runs ``AuditAnchorWorkflow`` every
  ``JIT_AUDIT_ANCHOR_INTERVAL_S`` on the worker's task queue.
- ``anchor_now``: one anchor, at once (tests, or an operator before a backup).
- ``read_anchors``: every anchor Temporal still holds for this task queue, for
  ``check(anchors)`` (``jit audit verify``, ``GET /v1/audit/verify``).

Finding them: each anchor is one short, closed workflow run, listed through
visibility by workflow type and task queue (system attributes: no custom search
attribute to register). Every run Temporal still keeps (the namespace's
retention) is checked, not only the newest: a rewrite of the whole log that a
later anchor recorded is still caught by the anchors taken before it. The
values come from each run's memo, which the server copies from the run's
history; a run whose memo is missing is read from its history (the result).
Independent runs rather than one long-lived workflow: a failed or lost run
costs one anchor, never the record of the earlier ones, and there is no
continue-as-new or query replay to get right.

One audit log per task queue: the anchors of a queue are the heads of the log
its workers write (PostgreSQL for workers on several machines).
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

from temporalio.client import Client

from core.audit_chain import Anchor, ChainHead
from core.schedules import ensure_schedule, periodic
from core.settings import Settings

ANCHOR_WORKFLOW = "AuditAnchorWorkflow"
ANCHOR_MEMO = "jit_audit_head"
ANCHOR_ID_PREFIX = "jit-audit-anchor-"
log = logging.getLogger("jit.audit")


def schedule_id(settings: Settings) -> str:
    """Also the id prefix of the runs it starts (the schedule appends the time)."""
    return f"{ANCHOR_ID_PREFIX}{settings.task_queue}"


async def ensure_anchor_schedule(client: Client, settings: Settings) -> None:
    """Create the anchor schedule, or bring an existing one to these settings (keeping its paused state)."""
    schedule = periodic(
        ANCHOR_WORKFLOW,
        id=schedule_id(settings),
        task_queue=settings.task_queue,
        every_s=settings.audit_anchor_interval_s,
    )
    await ensure_schedule(
        client,
        schedule_id(settings),
        schedule,
        missing="audit anchors stop: jit audit verify cannot see records cut off at the end",
    )


async def anchor_now(client: Client, settings: Settings) -> ChainHead:
    """Run one anchor and wait for it: the head it recorded."""
    return await client.execute_workflow(
        ANCHOR_WORKFLOW,
        id=f"{schedule_id(settings)}-now-{uuid.uuid4()}",
        task_queue=settings.task_queue,
        result_type=ChainHead,
        execution_timeout=timedelta(minutes=5),
    )


def anchors_query(settings: Settings) -> str:
    queue = settings.task_queue.replace("\\", "\\\\").replace("'", "\\'")
    return f"WorkflowType = '{ANCHOR_WORKFLOW}' AND TaskQueue = '{queue}' AND ExecutionStatus = 'Completed'"


async def read_anchors(client: Client, settings: Settings) -> list[Anchor]:
    """Every completed anchor run Temporal still holds for this task queue, newest first."""
    anchors = []
    async for run in client.list_workflows(anchors_query(settings)):
        head = await run.memo_value(ANCHOR_MEMO, None, type_hint=ChainHead)
        if head is None:
            head = await client.get_workflow_handle(run.id, run_id=run.run_id, result_type=ChainHead).result()
        anchors.append(Anchor(head=head, at=run.close_time, workflow_id=run.id))
    anchors.sort(key=lambda a: a.at or datetime.min.replace(tzinfo=UTC), reverse=True)
    return anchors
