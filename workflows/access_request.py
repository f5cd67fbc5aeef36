"""AccessRequestWorkflow: one access request, from filing to revocation.

States::

    pending ──approve (N distinct approvers)──► [scheduled] ──► provisioning ──► active ──timer──► expired
       │ deny ► denied   │ cancel ► cancelled   │ no decision in time ► timed_out
       provisioning fails ► failed (rolled back)            active ── revoke ► revoked
                                                             active ── extend ► active (later expiry)

``approvals_required == 0`` (auto-approve) skips pending. ``start_at`` in the
future parks an approved request in ``scheduled`` until then; the grant's
clock starts when access becomes active.

Approval runs in ordered stages (``approvals.py``); a break-glass grant is
active at once and the workflow stays open until its review is acknowledged.

Messages:
    updates  ``approve``, ``deny``, ``cancel``, ``revoke``, ``extend``,
             ``acknowledge``: each has a validator, so a refused call
             (403/409/422 at the API) leaves no trace in history; while active,
             approve/deny decide a pending extension (``extensions.py``);
             ``settled`` returns once provisioning is over.
    query    ``get`` → :class:`AccessRequestView` (built in ``state.py``).

Provisioning and ending a grant are in ``grant_steps.py``, the waits in
``waits.py``; activity calls, timeouts and retries in ``steps.py``. Every event
goes to the audit log (``audit_trail.py``), and the people it concerns hear of
it (``notify_steps.py``, without waiting on any channel). Every state after provisioning has run the
revoke steps to completion before the workflow ends, whatever crashed in between.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from temporalio import workflow

from workflows import steps
from workflows.approvals import ApprovalRouting
from workflows.audit_trail import AuditTrail
from workflows.extensions import ExtensionSteps
from workflows.grant_steps import CANCELLED_BY, CANCELLED_REASON, GrantSteps
from workflows.notifications import Notifier
from workflows.waits import HISTORY_TIMERS_PATCH

with workflow.unsafe.imports_passed_through():
    from activities.provisioners.base import GrantSpec
    from core import errors
    from core.audit import AuditEventType
    from core.models import (
        TERMINAL,
        AccessRequestInput,
        AccessRequestView,
        AcknowledgeInput,
        Actor,
        Approval,
        ApproveInput,
        CancelInput,
        Decision,
        DenyInput,
        ExtendInput,
        RevokeInput,
        Status,
    )
    from core.notify_models import EventKind


__all__ = ["CANCELLED_BY", "CANCELLED_REASON", "AccessRequestWorkflow"]


@workflow.defn
class AccessRequestWorkflow(GrantSteps, ExtensionSteps):
    @workflow.init
    def __init__(self, req: AccessRequestInput) -> None:
        self._req = req
        self._status = Status.PENDING if req.policy.effective_stages() else self._approved_status()
        self._routing = ApprovalRouting(req, workflow.now())
        self._local_store = workflow.patched(steps.GRANT_STORE_PATCH)
        self._history_timers = workflow.patched(HISTORY_TIMERS_PATCH)
        self._ending = False
        self._clock_floor: datetime | None = None
        self._audit = AuditTrail(req, self._set_audit_alert, local=self._local_store)
        self._notify = Notifier(req)
        self._approved_at: datetime | None = None
        self._activated_at: datetime | None = None
        self._expires_at: datetime | None = None
        self._ended_at: datetime | None = None
        self._denial: Decision | None = None
        self._cancellation: Decision | None = None
        self._revocation: Decision | None = None
        self._extensions: list[Decision] = []
        self._failure: str | None = None
        self._extend_lock = asyncio.Lock()
        self._spec: GrantSpec | None = None
        self._principal: str | None = None
        self._alert: str | None = None
        self._alert_published = False
        self._alert_kind = "revoke_failing"
        self._revocation_verified_at: datetime | None = None
        self._review: Decision | None = None
        self._pending_extension: Decision | None = None
        if self._routing.done:
            self._approved_at = req.created_at

    @workflow.run
    async def run(self, req: AccessRequestInput) -> AccessRequestView:
        self._publish()
        self._audit.emit(
            AuditEventType.REQUESTED,
            actor=req.requester.sub,
            reason=req.reason,
            ticket=req.ticket,
            duration_s=req.duration_s,
            policy_version=req.policy_version,
            policy_reasons=req.policy.reasons,
            stages=[st.name for st in self._routing.stages],
            auto_approve=self._routing.done and not req.policy.break_glass,
            break_glass=req.policy.break_glass,
        )
        if self._status is Status.PENDING:
            self._notify_stage()
        if req.policy.break_glass:
            self._notify_break_glass()
        try:
            await self._lifecycle()
        except asyncio.CancelledError:
            # Cancelled from Temporal UI or the CLI: the same end as a revoke.
            if not self._history_timers:
                raise
            await self._end_cancelled()
        return await self._finish()

    # -- lifecycle steps -------------------------------------------------

    async def _lifecycle(self) -> None:
        if self._status is Status.PENDING:
            await self._await_decision()
        if self._status is Status.SCHEDULED:
            await self._await_start()
        if self._status is Status.PROVISIONING:
            await self._provision()
        if self._status is Status.ACTIVE:
            await self._hold_grant()
            await self._end_grant()
        if self._review_pending:
            # Break-glass: the workflow stays open, and listed, until reviewed.
            self._publish()
            await workflow.wait_condition(lambda: not self._review_pending)

    async def _finish(self) -> AccessRequestView:
        self._ended_at = workflow.now()
        self._publish()
        await self._audit.flushed()
        await self._notify.drained()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._view()

    # -- updates -----------------------------------------------------------

    @workflow.update
    async def approve(self, input: ApproveInput) -> AccessRequestView:
        if self._status is Status.ACTIVE:
            await self._approve_extension(input)
            return self._view()
        approval = Approval(
            approver=input.actor.sub, at=workflow.now(), comment=input.comment, permitted_by=input.permitted_by
        )
        self._audit.emit(
            AuditEventType.APPROVED,
            actor=input.actor.sub,
            reason=input.comment,
            stage=self._routing.stage.name if self._routing.stage else None,
            permitted_by=input.permitted_by,
        )
        stage = self._routing.index
        if self._routing.record(approval, workflow.now()):
            self._approved_at = workflow.now()
            self._status = self._approved_status()
            # The requester hears "active" (or "failed") in a moment, with the approvals:
            # a separate "approved" only when access waits for start_at.
            kind = EventKind.APPROVED if self._status is Status.SCHEDULED else EventKind.DECIDED
            self._notify_decided(kind, input.actor.sub, input.comment, status="approved")
            # Answer the last approver with the outcome of provisioning.
            await workflow.wait_condition(lambda: self._status is not Status.PROVISIONING)
        else:
            self._publish()
            if self._routing.index != stage:  # the next stage waits: its approvers hear of it
                self._notify_decided(EventKind.DECIDED, input.actor.sub, input.comment, status="approved")
                self._notify_stage()
        return self._view()

    @approve.validator
    def _validate_approve(self, input: ApproveInput) -> None:
        if self._status is Status.ACTIVE and self._pending_extension is not None:
            self._routing.check_extension(input.actor, "approve")
            return
        self._check_decider(input.actor, "approve")

    @workflow.update
    def deny(self, input: DenyInput) -> AccessRequestView:
        if self._status is Status.ACTIVE:
            self._pending_extension = None
            self._audit.emit(AuditEventType.EXTENSION_DENIED, actor=input.actor.sub, reason=input.reason)
            self._notify_decided(EventKind.EXTENSION_DENIED, input.actor.sub, input.reason, expires_at=self._expires_at)
            if self._history_timers:
                self._publish()
            return self._view()
        self._denial = Decision(actor=input.actor.sub, at=workflow.now(), reason=input.reason)
        self._status = Status.DENIED
        self._audit.emit(AuditEventType.DENIED, actor=input.actor.sub, reason=input.reason)
        self._notify_decided(EventKind.DENIED, input.actor.sub, input.reason)
        return self._view()

    @deny.validator
    def _validate_deny(self, input: DenyInput) -> None:
        if self._status is Status.ACTIVE and self._pending_extension is not None:
            self._routing.check_extension(input.actor, "deny")
            return
        self._check_decider(input.actor, "deny")

    @workflow.update
    def cancel(self, input: CancelInput) -> AccessRequestView:
        self._cancellation = Decision(actor=input.actor.sub, at=workflow.now(), reason=input.reason)
        self._status = Status.CANCELLED
        self._audit.emit(AuditEventType.CANCELLED, actor=input.actor.sub, reason=input.reason)
        self._notify_decided(EventKind.DECIDED, input.actor.sub, input.reason, status=Status.CANCELLED.value)
        return self._view()

    @cancel.validator
    def _validate_cancel(self, input: CancelInput) -> None:
        if input.actor.sub != self._req.requester.sub:
            raise errors.forbidden("only the requester may cancel a request")
        if self._status not in (Status.PENDING, Status.SCHEDULED):
            raise errors.conflict(f"request is {self._status}; only a pending request can be cancelled")

    @workflow.update
    async def revoke(self, input: RevokeInput) -> AccessRequestView:
        if self._status is Status.SCHEDULED:
            # Approved but not yet provisioned: nothing to take back.
            self._revocation = Decision(actor=input.actor.sub, at=workflow.now(), reason=input.reason)
            self._status = Status.REVOKED
            self._audit.emit(AuditEventType.REVOKED, actor=input.actor.sub, reason=input.reason)
        elif self._revocation is None:
            self._revocation = Decision(actor=input.actor.sub, at=workflow.now(), reason=input.reason)
        # Answer once access is really gone.
        await workflow.wait_condition(lambda: self._status in TERMINAL)
        return self._view()

    @revoke.validator
    def _validate_revoke(self, input: RevokeInput) -> None:
        actor = input.actor
        permitted = input.permitted_by or actor.in_any(self._req.policy.admin_groups)
        if actor.sub != self._req.requester.sub and not permitted:
            raise errors.forbidden("only the requester or someone the policy permits may revoke access")
        if self._status not in (Status.SCHEDULED, Status.PROVISIONING, Status.ACTIVE):
            hint = "; cancel a pending request instead" if self._status is Status.PENDING else ""
            raise errors.conflict(f"request is {self._status}, not active{hint}")

    @workflow.update
    async def extend(self, input: ExtendInput) -> AccessRequestView:
        if self._req.policy.extension_approval and self._routing.stages:
            # Past what was approved: the approvers decide (see approve/deny).
            self._pending_extension = Decision(
                actor=input.actor.sub, at=workflow.now(), reason=input.reason, duration_s=input.duration_s
            )
            self._routing.new_extension()
            self._audit.emit(
                AuditEventType.EXTENSION_REQUESTED,
                actor=input.actor.sub,
                reason=input.reason,
                duration_s=input.duration_s,
            )
            if self._history_timers:
                self._publish()  # into the approvers' "to approve" lists
            self._notify_extension_pending(input.duration_s)
            return self._view()
        await self._apply_extension(input.actor.sub, input.duration_s, input.reason, approved_by=[])
        return self._view()

    @extend.validator
    def _validate_extend(self, input: ExtendInput) -> None:
        if input.actor.sub != self._req.requester.sub:
            raise errors.forbidden("only the requester may extend access")
        if self._status is not Status.ACTIVE or self._revocation is not None:
            raise errors.conflict(f"request is {self._status}, not active")
        if self._ending:
            raise errors.conflict("the grant is ending; file a new request")
        if self._pending_extension is not None:
            raise errors.conflict("an extension is already waiting for approval")
        self._check_extension_fits(input.duration_s)

    @workflow.update
    def acknowledge(self, input: AcknowledgeInput) -> AccessRequestView:
        self._review = Decision(actor=input.actor.sub, at=workflow.now(), reason=input.comment)
        self._audit.emit(AuditEventType.REVIEWED, actor=input.actor.sub, reason=input.comment)
        self._publish()
        return self._view()

    @acknowledge.validator
    def _validate_acknowledge(self, input: AcknowledgeInput) -> None:
        if not self._req.policy.break_glass:
            raise errors.conflict("only break-glass grants are reviewed")
        if input.actor.sub == self._req.requester.sub:
            raise errors.forbidden("you cannot review your own break-glass access")
        if not input.actor.in_any(self._req.policy.review_groups):
            raise errors.forbidden(
                f"only members of {', '.join(self._req.policy.review_groups) or 'nobody'} may review"
            )
        if not self._review_pending:
            raise errors.conflict("no review is pending on this request")

    @workflow.update
    async def settled(self) -> AccessRequestView:
        """Returns once the request is past provisioning (or waiting on people)."""
        await workflow.wait_condition(lambda: self._status is not Status.PROVISIONING)
        return self._view()

    @workflow.query
    def get(self) -> AccessRequestView:
        return self._view()

    # -- helpers -------------------------------------------------------------

    def _approved_status(self) -> Status:
        start_at = self._req.start_at
        return Status.SCHEDULED if start_at and start_at > workflow.now() else Status.PROVISIONING

    def _check_decider(self, actor: Actor, verb: str) -> None:
        if self._status is not Status.PENDING:
            if actor.sub == self._req.requester.sub:
                raise errors.forbidden(f"you cannot {verb} your own request")
            raise errors.conflict(f"request is {self._status}, not pending")
        self._routing.check(actor, verb)
