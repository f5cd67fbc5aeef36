"""The workflow's side of the audit log: number events, write them in order.

Events are buffered and written by one background coroutine, in batches, so
handlers never wait on the audit store, except where the product promises to
fail closed: access does not become active until its "provisioned" record
is written (``flushed``).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.audit import AuditActivities
    from core.audit import AuditEvent, AuditEventType
    from core.models import AccessRequestInput

# Histories from before the audit log replay without it.
PATCH = "audit-log-v1"
APPEND_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=10))


class AuditTrail:
    def __init__(self, req: AccessRequestInput):
        self._req = req
        self._events: list[AuditEvent] = []
        self._written = 0
        self._enabled = workflow.patched(PATCH)
        self._task: asyncio.Task[None] | None = None

    def emit(self, type: AuditEventType, *, actor: str | None = None, reason: str | None = None, **details: Any) -> int:
        """Queue one event; returns how many events must be written to include it."""
        if not self._enabled:
            return 0
        seq = len(self._events) + 1
        self._events.append(
            AuditEvent(
                event_id=f"{self._req.id}:{seq}",
                request_id=self._req.id,
                seq=seq,
                type=type,
                at=workflow.now(),
                actor=actor,
                reason=reason,
                requester=self._req.requester.sub,
                resource=self._req.resource,
                action=self._req.action,
                details=details,
            )
        )
        if self._task is None:
            self._task = asyncio.create_task(self._drain())
        return seq

    async def flushed(self, upto: int | None = None) -> None:
        target = len(self._events) if upto is None else upto
        await workflow.wait_condition(lambda: self._written >= target)

    async def _drain(self) -> None:
        while True:
            await workflow.wait_condition(lambda: len(self._events) > self._written)
            batch = self._events[self._written :]
            # Retries forever: an audit store that is down holds the request
            # (fail closed), it never loses the event.
            await workflow.execute_activity_method(
                AuditActivities.append_audit,
                batch,
                start_to_close_timeout=timedelta(seconds=15),
                retry_policy=APPEND_RETRY,
                summary=f"audit: {', '.join(e.type for e in batch)}"[:100],
            )
            self._written += len(batch)
