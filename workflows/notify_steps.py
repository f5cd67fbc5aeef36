"""Who hears what, when: the lifecycle's events turned into notifications (workflows/notifications.py).

Approvers hear of a stage waiting on them (and of an escalation, or an
extension to approve), and their messages are updated once it is decided; the
requester hears of every decision, of access becoming active, of its coming
expiry and of its end; security of a break-glass grant at once; operations of
an alert when raised and when cleared. Deterministic workflow code.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow

from workflows import steps
from workflows.notifications import reminder_at
from workflows.state import RequestState

with workflow.unsafe.imports_passed_through():
    from core.models import Status
    from core.notify_models import Audience, EventKind

REQUESTER = (Audience.REQUESTER.value,)


def _groups(groups: list[str]) -> list[str]:
    return [f"group:{g}" for g in groups]


class NotifySteps(RequestState):
    def _notify_stage(self, kind: EventKind = EventKind.FILED) -> None:
        """The approvers of the stage now waiting (or, escalated, of its escalation groups)."""
        stage = self._routing.stage
        if stage is None:
            return
        if kind is EventKind.FILED:
            # Once per stage: an approval can land before the run's first step.
            if self._routing.index in self._notify.announced:
                return
            self._notify.announced.add(self._routing.index)
        groups = stage.escalate_to if kind is EventKind.ESCALATED else self._routing.eligible_groups()
        self._notify.send(
            kind,
            _groups(groups),
            track=True,
            status=self._status.value,
            groups=groups,
            approvals_needed=stage.approvals,
            approvals=[a.approver for a in self._routing.approvals],
        )

    def _notify_extension_pending(self, duration_s: int) -> None:
        groups = self._routing.stages[0].groups if self._routing.stages else []
        self._notify.send(
            EventKind.EXTENSION_PENDING,
            _groups(groups),
            track=True,
            status=self._status.value,
            groups=groups,
            approvals_needed=self._routing.stages[0].approvals if self._routing.stages else 1,
            extension_s=duration_s,
            expires_at=self._expires_at,
        )

    def _notify_decided(
        self, kind: EventKind, actor: str | None = None, detail: str | None = None, **extra: Any
    ) -> None:
        """Approvers' messages updated; the requester told (not of their own cancellation)."""
        approvals = [a.approver for a in self._routing.approvals]
        status = extra.pop("status", kind.value)
        self._notify.decided(status=status, actor=actor, detail=detail, approvals=approvals, **extra)
        if kind is not EventKind.DECIDED:
            self._notify.send(
                kind,
                list(REQUESTER),
                status=self._status.value,
                actor=actor,
                detail=detail,
                approvals=approvals,
                **extra,
            )

    def _notify_requester(self, kind: EventKind, actor: str | None = None, detail: str | None = None) -> None:
        self._notify.send(
            kind,
            list(REQUESTER),
            status=self._status.value,
            actor=actor,
            detail=detail,
            expires_at=self._expires_at,
            principal=self._principal,
            approvals=[a.approver for a in self._routing.approvals],
        )

    def _notify_break_glass(self) -> None:
        self._notify.send(EventKind.BREAK_GLASS, [Audience.SECURITY.value], status=self._status.value)

    def _notify_alert(self, alert: str | None, kind: str) -> None:
        event = EventKind.ALERT_RAISED if alert else EventKind.ALERT_CLEARED
        self._notify.send(
            event, [Audience.OPERATIONS.value], status=self._status.value, detail=f"{kind}: {alert}" if alert else kind
        )

    async def _remind(self) -> None:
        """The expiry reminder: ``reminder_lead_s`` before each expiry, again after an extension."""
        plan = self._notify.plan
        assert plan is not None and self._activated_at is not None
        while self._status is Status.ACTIVE and self._revocation is None and not self._ending:
            expires_at = self._expires_at
            assert expires_at is not None

            def moved(expires_at: Any = expires_at) -> bool:
                return self._expires_at != expires_at or self._revocation is not None or self._ending

            at = reminder_at(expires_at, self._activated_at, plan)
            if at is not None:
                try:
                    await workflow.wait_condition(
                        moved, timeout=max(at - workflow.now(), steps.MIN_TIMER), timeout_summary="expiry reminder"
                    )
                    continue
                except TimeoutError:
                    self._notify_requester(EventKind.EXPIRING)
            await workflow.wait_condition(moved)
