"""The lifecycle's three waits: for a decision, for ``start_at``, for the grant's end.

Each is a durable timer cut short by an update. What a wait does when its timer
fires is decided by *which* timer fired, never by reading the clock again:
a query that replays an evicted workflow can apply a timer's firing before the
workflow task that carries it has started, so ``workflow.now()`` there is the
previous task's time, while the live run saw a later one. A command that
depended on that difference (the first version's extra clock reading and second
full-length grant timer) was issued in one and not the other (../shared/STYLE.md,
"Determinism covers queries too").

``HISTORY_TIMERS_PATCH`` switches new runs to these rules; runs started before
it keep the first version's (``_hold_grant_v1``, ``_await_decision_v1``) so that
their histories replay. Clock readings still size the timers, where a stale one
only costs accuracy: ``_clock()`` never goes below an instant a fired timer
proved has passed, and the grant timer is shortened by a wall-clock reading
recorded in history (``steps.grant_timer``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow

from workflows import steps
from workflows.notify_steps import NotifySteps

with workflow.unsafe.imports_passed_through():
    from core.audit import AuditEventType
    from core.models import Status
    from core.notify_models import EventKind

HISTORY_TIMERS_PATCH = "history-timers-v1"


class Waits(NotifySteps):
    def _clock(self) -> datetime:
        """``workflow.now()``, but never earlier than a fired timer's target."""
        now = workflow.now()
        return max(now, self._clock_floor) if self._clock_floor else now

    def _timer_fired(self, target: datetime) -> None:
        self._clock_floor = max(target, self._clock_floor) if self._clock_floor else target

    # -- waiting for approval ------------------------------------------------------

    async def _await_decision(self) -> None:
        """Wait for the stages to complete, escalating a stage that waits too long."""
        if not self._history_timers:
            return await self._await_decision_v1()
        deadline = self._clock() + timedelta(seconds=self._req.policy.approval_timeout_s)
        while self._status is Status.PENDING:
            escalate_at = self._routing.escalation_at()
            escalating = escalate_at is not None and escalate_at < deadline
            target = escalate_at if escalating and escalate_at else deadline
            stage = self._routing.index
            try:
                await workflow.wait_condition(
                    lambda stage=stage: self._status is not Status.PENDING or self._routing.index != stage,
                    timeout=max(target - self._clock(), steps.MIN_TIMER),
                    timeout_summary="escalation" if escalating else "approval deadline",
                )
            except TimeoutError:
                self._timer_fired(target)
                if not escalating:
                    self._time_out()
                    return
                self._routing.escalate()
                self._audit.emit(AuditEventType.ESCALATED, groups=self._routing.eligible_groups())
                self._publish()
                self._notify_stage(EventKind.ESCALATED)

    async def _await_decision_v1(self) -> None:
        deadline = workflow.now() + timedelta(seconds=self._req.policy.approval_timeout_s)
        while self._status is Status.PENDING:
            now = workflow.now()
            if now >= deadline:
                self._time_out()
                return
            escalate_at = self._routing.escalation_at()
            wait = min(deadline, escalate_at) - now if escalate_at else deadline - now
            stage = self._routing.index
            try:
                await workflow.wait_condition(
                    lambda stage=stage: self._status is not Status.PENDING or self._routing.index != stage,
                    timeout=wait,
                    timeout_summary="approval deadline" if wait == deadline - now else "escalation",
                )
            except TimeoutError:
                if escalate_at is not None and workflow.now() >= escalate_at:
                    self._routing.escalate()
                    self._audit.emit(AuditEventType.ESCALATED, groups=self._routing.eligible_groups())
                    self._publish()

    def _time_out(self) -> None:
        self._status = Status.TIMED_OUT
        self._audit.emit(AuditEventType.TIMED_OUT, stage=self._routing.stage.name if self._routing.stage else None)
        self._notify_decided(EventKind.TIMED_OUT)

    # -- waiting for start_at ----------------------------------------------------

    async def _await_start(self) -> None:
        start_at = self._req.start_at
        assert start_at is not None
        self._publish()
        try:
            await workflow.wait_condition(
                lambda: self._status is not Status.SCHEDULED,
                timeout=max(start_at - self._clock(), steps.MIN_TIMER)
                if self._history_timers
                else start_at - workflow.now(),
                timeout_summary=f"start at {start_at:%Y-%m-%d %H:%M} UTC",
            )
        except TimeoutError:
            if self._history_timers:
                self._timer_fired(start_at)
            self._status = Status.PROVISIONING

    # -- holding the grant -------------------------------------------------------

    async def _hold_grant(self) -> None:
        """Durable timer to the expiry, cut short by revoke, moved by extend."""
        if not self._history_timers:
            return await self._hold_grant_v1()
        while self._revocation is None:
            assert self._expires_at is not None
            expires_at = self._expires_at
            wait = await steps.grant_timer(expires_at)
            if wait is None:  # the recorded clock reading is past the expiry
                break
            try:
                await workflow.wait_condition(
                    lambda expires_at=expires_at: self._revocation is not None or self._expires_at != expires_at,
                    timeout=wait,
                    timeout_summary=f"grant until {expires_at:%H:%M:%S} UTC",
                )
            except TimeoutError:
                if self._expires_at == expires_at:
                    self._timer_fired(expires_at)
                    break
        self._ending = True

    async def _hold_grant_v1(self) -> None:
        while self._revocation is None:
            assert self._expires_at is not None
            expires_at = self._expires_at
            left = await steps.time_left(expires_at, self._local_store)
            if left <= timedelta(0):
                return
            try:
                await workflow.wait_condition(
                    lambda expires_at=expires_at: self._revocation is not None or self._expires_at != expires_at,
                    timeout=left,
                    timeout_summary=f"grant until {expires_at:%H:%M:%S} UTC",
                )
            except TimeoutError:
                pass
