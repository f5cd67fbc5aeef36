"""What one access request knows, and how it shows it.

The state the workflow keeps (declared here, set by ``AccessRequestWorkflow``),
rendered two ways: the view clients get (``_view``) and the search attributes
Temporal UI filters on (``_publish``). Deterministic workflow code.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from temporalio import workflow

from workflows.approvals import ApprovalRouting
from workflows.audit_trail import AuditTrail
from workflows.notifications import Notifier

with workflow.unsafe.imports_passed_through():
    from activities.provisioners.base import GrantSpec
    from core.durations import format_duration
    from core.models import AccessRequestInput, AccessRequestView, Decision, Status
    from core.temporal import (
        SA_ACTION,
        SA_ALERT,
        SA_APPROVER_GROUPS,
        SA_APPROVERS,
        SA_BREAK_GLASS,
        SA_EXPIRES_AT,
        SA_EXTENSION_PENDING,
        SA_REQUESTER,
        SA_RESOURCE,
        SA_REVIEW,
        SA_STATUS,
    )


class RequestState:
    _req: AccessRequestInput
    _status: Status
    _routing: ApprovalRouting
    _audit: AuditTrail
    _approved_at: datetime | None
    _activated_at: datetime | None
    _expires_at: datetime | None
    _ended_at: datetime | None
    _denial: Decision | None
    _cancellation: Decision | None
    _revocation: Decision | None
    _extensions: list[Decision]
    _failure: str | None
    _extend_lock: asyncio.Lock
    _spec: GrantSpec | None
    _principal: str | None
    _alert: str | None
    _alert_published: bool
    _alert_kind: str  # JitAlert while _alert is set: revoke_failing or audit_failing
    _revocation_verified_at: datetime | None
    _review: Decision | None
    _pending_extension: Decision | None
    _local_store: bool  # grant-store writes as local activities (steps.GRANT_STORE_PATCH)
    _history_timers: bool  # waits.HISTORY_TIMERS_PATCH, decided once per run
    _ending: bool  # the grant's end has begun (timer fired, or cancelled): no extension lands
    _clock_floor: datetime | None  # the latest instant a fired timer proved has passed
    _notify: Notifier  # notifications.NOTIFICATIONS_PATCH, and only with a plan in the input

    @property
    def _review_pending(self) -> bool:
        return self._req.policy.break_glass and self._review is None and self._activated_at is not None

    def _publish(self) -> None:
        """Upsert every search attribute: Temporal UI's audit filters read these."""
        updates = [
            SA_REQUESTER.value_set(self._req.requester.sub),
            SA_RESOURCE.value_set(self._req.resource),
            SA_ACTION.value_set(self._req.action),
            SA_STATUS.value_set(self._status.value),
            SA_APPROVERS.value_set([a.approver for a in self._routing.approvals]),
            SA_APPROVER_GROUPS.value_set(self._routing.eligible_groups() or self._req.policy.approver_groups),
        ]
        if self._expires_at is not None:
            updates.append(SA_EXPIRES_AT.value_set(self._expires_at))
        if self._alert is not None:
            updates.append(SA_ALERT.value_set(self._alert_kind))
        elif self._alert_published:
            updates.append(SA_ALERT.value_unset())
        self._alert_published = self._alert is not None
        if self._history_timers and self._req.policy.extension_approval:
            # (waits.HISTORY_TIMERS_PATCH: runs from before never set it)
            updates.append(SA_EXTENSION_PENDING.value_set(self._pending_extension is not None))
        if self._req.policy.break_glass:
            updates.append(SA_BREAK_GLASS.value_set(True))
            if self._activated_at is not None:
                updates.append(SA_REVIEW.value_set("pending" if self._review is None else "acknowledged"))
        workflow.upsert_search_attributes(updates)
        # What Temporal UI shows as the request's "Current Details": metadata, not a command,
        # so it changes nothing a replay compares.
        workflow.set_current_details(self._details())

    def _details(self) -> str:
        req = self._req
        lines = [f"**{self._status.value}**: {req.action} on `{req.resource}` for {req.requester.sub}"]
        if self._status is Status.PENDING and self._routing.stage is not None:
            have = sum(1 for a in self._routing.approvals if a.stage == self._routing.stage.name)
            groups = ", ".join(self._routing.eligible_groups())
            lines.append(f"Waiting for approval: {have} of {self._routing.stage.approvals} from {groups}")
        if self._routing.approvals:
            lines.append("Approved by " + ", ".join(a.approver for a in self._routing.approvals))
        if self._req.start_at is not None and self._activated_at is None:
            lines.append(f"Starts {self._req.start_at:%Y-%m-%d %H:%M:%S} UTC")
        if self._expires_at is not None:
            lines.append(f"Expires {self._expires_at:%Y-%m-%d %H:%M:%S} UTC")
        if self._pending_extension is not None and self._pending_extension.duration_s:
            lines.append(f"Extension of {format_duration(self._pending_extension.duration_s)} waiting for approval")
        if self._revocation is not None:
            lines.append(f"Revoked by {self._revocation.actor}")
        if self._revocation_verified_at is not None:
            lines.append(f"Revocation verified {self._revocation_verified_at:%Y-%m-%d %H:%M:%S} UTC")
        if self._alert is not None:
            lines.append(f"Alert ({self._alert_kind}): {self._alert}")
        if self._review_pending:
            lines.append("Break-glass: review pending")
        return "\n\n".join(lines)

    def _view(self) -> AccessRequestView:
        return AccessRequestView.of(
            self._req,
            self._status,
            approvals=list(self._routing.approvals),
            approved_at=self._approved_at,
            activated_at=self._activated_at,
            expires_at=self._expires_at,
            ended_at=self._ended_at,
            denial=self._denial,
            cancellation=self._cancellation,
            revocation=self._revocation,
            extensions=list(self._extensions),
            failure=self._failure,
            revocation_verified_at=self._revocation_verified_at,
            alert=self._alert,
            principal=self._principal,
            stage=self._routing.stage.name if self._routing.stage and self._status is Status.PENDING else None,
            eligible_groups=self._routing.eligible_groups() if self._status is Status.PENDING else [],
            escalated=self._routing.escalated,
            review=self._review,
            review_pending=self._review_pending,
            pending_extension=self._pending_extension,
        )
