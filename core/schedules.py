"""The Temporal Schedules the worker keeps: one shape, created or updated at every worker start.

Two today: the audit anchors (core/audit_anchors.py) and the reconciler
(workflows/reconciler.py). Each runs one short workflow every interval on the
worker's task queue; a run still going is not doubled, and runs missed while
the server was away are not caught up (the next one does the same work).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.service import RPCError

log = logging.getLogger("jit.schedules")


def periodic(workflow: str, *, id: str, task_queue: str, every_s: float, args: Sequence[Any] = ()) -> Schedule:
    """``id`` is also the id prefix of the runs it starts (the schedule appends the time)."""
    return Schedule(
        action=ScheduleActionStartWorkflow(
            workflow, args=args, id=id, task_queue=task_queue, execution_timeout=timedelta(minutes=5)
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(seconds=every_s))]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=timedelta(minutes=1)),
    )


async def ensure_schedule(client: Client, schedule_id: str, schedule: Schedule, *, missing: str) -> None:
    """Create ``schedule``, or bring an existing one to it (keeping its paused state).

    ``missing``: what an operator loses while it is not scheduled, logged as an
    error; the worker runs on, since revoking access on time matters more."""

    def update(current: ScheduleUpdateInput) -> ScheduleUpdate:
        return ScheduleUpdate(schedule=dataclasses.replace(schedule, state=current.description.schedule.state))

    try:
        try:
            await client.create_schedule(schedule_id, schedule, trigger_immediately=True)
        except ScheduleAlreadyRunningError:
            await client.get_schedule_handle(schedule_id).update(update)
    except RPCError as e:
        log.error("schedule %s not set (%s): %s", schedule_id, e, missing)
