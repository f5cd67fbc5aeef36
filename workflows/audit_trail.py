"""The workflow's side of the audit log: number events, write them in order.

Events are buffered and written by one background coroutine, in batches, so
handlers never wait on the audit store, except where the product promises to
fail closed: access does not become active until its "provisioned" record
is written (``flushed``).

Writes are local activities (see ``steps.GRANT_STORE_PATCH``) that never give
up: a failed write raises the request's alert (``JitAlert=audit_failing``, the
``alert`` field) until a later attempt lands, so an operator sees a stuck
request in Temporal UI and in the API.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

from workflows import steps

with workflow.unsafe.imports_passed_through():
    from activities.audit import AuditActivities
    from core.audit import AuditEvent, AuditEventType
    from core.models import AccessRequestInput

# Histories from before the audit log replay without it.
PATCH = "audit-log-v1"
APPEND_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=10))
APPEND_TIMEOUT = timedelta(seconds=15)
# Local writes: one attempt a round, the alert up after the first failure, then
# pauses that grow to a few events a minute for an audit store that stays down.
ROUND_PAUSES_S = (1, 2, 5, 10, 30)


class AuditTrail:
    def __init__(self, req: AccessRequestInput, on_alert: Callable[[str | None], None], *, local: bool):
        """``local``: write with local activities (decided once per run, ``steps.GRANT_STORE_PATCH``)."""
        self._req = req
        self._on_alert = on_alert
        self._local = local
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
            summary = f"audit: {', '.join(e.type for e in batch)}"[:100]
            if self._local:
                await self._append_local(batch, summary)
            else:
                # Older histories: a regular activity that retries forever.
                await workflow.execute_activity_method(
                    AuditActivities.append_audit,
                    batch,
                    start_to_close_timeout=APPEND_TIMEOUT,
                    retry_policy=APPEND_RETRY,
                    summary=summary,
                )
            self._written += len(batch)

    async def _append_local(self, batch: list[AuditEvent], summary: str) -> None:
        """Never gives up: an audit store that is down holds the request (fail closed)."""
        failures = 0
        while True:
            try:
                await workflow.execute_local_activity_method(
                    AuditActivities.append_audit,
                    batch,
                    start_to_close_timeout=APPEND_TIMEOUT,
                    retry_policy=RetryPolicy(maximum_attempts=1),
                    summary=summary,
                )
            except steps.StepFailed as e:
                self._on_alert(f"audit log write failing, still retrying: {e.cause or e}"[:300])
                pause = ROUND_PAUSES_S[min(failures, len(ROUND_PAUSES_S) - 1)]
                failures += 1
                await workflow.sleep(timedelta(seconds=pause), summary="audit retry pause")
                continue
            if failures:
                self._on_alert(None)
            return
