"""Holding access: provision it, and end it (revoke and verify) whatever interrupts.

The steps of ``AccessRequestWorkflow`` between approval and the end, and the
request's alert (raised while revocation or the audit log keeps failing).
Deterministic workflow code.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from workflows import steps
from workflows.waits import Waits

with workflow.unsafe.imports_passed_through():
    from core.audit import AuditEventType
    from core.models import Decision, Status
    from core.notify_models import EventKind

# Who ended a request whose workflow was cancelled outside jit-access.
CANCELLED_BY = "temporal"
CANCELLED_REASON = "workflow cancelled in Temporal (UI or CLI)"


class GrantSteps(Waits):
    async def _end_grant(self) -> None:
        """Revoke and verify (to completion, whatever interrupts), then record why it ended."""
        await self._revoke(self._revocation.reason if self._revocation else "expired")
        self._status = Status.REVOKED if self._revocation else Status.EXPIRED
        if self._revocation:
            self._audit.emit(AuditEventType.REVOKED, actor=self._revocation.actor, reason=self._revocation.reason)
            self._notify_requester(EventKind.REVOKED, self._revocation.actor, self._revocation.reason)
        else:
            self._audit.emit(AuditEventType.EXPIRED, expires_at=self._expires_at)
            self._notify_requester(EventKind.EXPIRED)

    async def _end_cancelled(self) -> None:
        """A workflow cancellation, wherever it lands: nothing live is left behind.

        Temporal delivers a cancellation once, so the revoke steps started here
        run to completion. A termination cannot be caught: the reconciler
        (workflows/reconciler.py) revokes what it strands."""
        decision = Decision(actor=CANCELLED_BY, at=workflow.now(), reason=CANCELLED_REASON)
        if self._status in (Status.PENDING, Status.SCHEDULED):
            self._cancellation = decision
            self._status = Status.CANCELLED
            self._audit.emit(AuditEventType.CANCELLED, actor=decision.actor, reason=decision.reason)
            self._notify_decided(EventKind.DECIDED, decision.actor, decision.reason, status=Status.CANCELLED.value)
        elif self._status in (Status.PROVISIONING, Status.ACTIVE):
            if self._revocation is None and not self._ending:
                self._revocation = decision
            self._ending = True
            await self._end_grant()

    async def _provision(self) -> None:
        self._publish()
        req = self._req
        # The grant's clock starts now, in workflow time: the store, the
        # tokens and the timer all use these two instants. Time lost to
        # provisioning retries comes out of the grant, never on top of it.
        activated_at = self._clock() if self._history_timers else workflow.now()
        self._spec = steps.grant_spec(req, activated_at, activated_at + timedelta(seconds=req.duration_s))
        try:
            outcome = await steps.issue(
                self._spec,
                local=self._local_store,
                requested_at=req.created_at,
                approved_at=self._approved_at if self._routing.stages else None,
            )
        except steps.StepFailed as e:
            self._failure = f"provisioning failed: {e.cause or e}"
            await self._revoke("rollback of failed provisioning")
            self._status = Status.FAILED
            self._audit.emit(AuditEventType.FAILED, reason=self._failure)
            self._notify_requester(EventKind.FAILED, detail=self._failure)
            return
        self._principal = outcome.principal if outcome else None
        # Fail closed: no access (no credentials) until the audit log has it.
        await self._audit.flushed(
            self._audit.emit(
                AuditEventType.PROVISIONED,
                activated_at=self._spec.activated_at,
                expires_at=self._spec.expires_at,
                principal=self._principal,
            )
        )
        self._activated_at = self._spec.activated_at
        self._expires_at = self._spec.expires_at
        self._status = Status.ACTIVE
        self._publish()
        self._notify_requester(EventKind.ACTIVE)
        if self._notify.on:
            self._notify.spawn(self._remind())

    async def _revoke(self, reason: str) -> None:
        outcome = await steps.revoke(self._req.id, self._spec, reason, self._set_alert, local=self._local_store)
        if outcome is not None:
            self._revocation_verified_at = workflow.now()

    def _set_alert(self, alert: str | None, kind: str = "revoke_failing") -> None:
        """The request's alert (one at a time): ``kind`` is what ``JitAlert`` shows while it is up."""
        if (alert is None) != (self._alert is None):
            self._notify_alert(alert, kind if alert else self._alert_kind)
        if alert != self._alert:
            self._alert = alert
            self._alert_kind = kind
            self._publish()

    def _set_audit_alert(self, alert: str | None) -> None:
        self._set_alert(alert, "audit_failing")
