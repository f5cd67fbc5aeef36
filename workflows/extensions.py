"""Extending an active grant, and approving an extension where policy asks for it.

Approvals are bound to the exact request: with ``extension_approval`` an
extension waits for the first stage's approvers before anything moves.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from workflows import steps
from workflows.notify_steps import NotifySteps

with workflow.unsafe.imports_passed_through():
    from core import errors
    from core.audit import AuditEventType
    from core.durations import format_duration
    from core.models import ApproveInput, Decision, Status
    from core.notify_models import EventKind


class ExtensionSteps(NotifySteps):
    async def _approve_extension(self, input: ApproveInput) -> None:
        pending = self._pending_extension
        assert pending is not None and pending.duration_s is not None
        enough = self._routing.record_extension(input.actor.sub)
        self._audit.emit(AuditEventType.APPROVED, actor=input.actor.sub, reason=input.comment, extension=True)
        if enough:
            self._pending_extension = None
            if self._history_timers:
                self._publish()
            await self._apply_extension(
                pending.actor, pending.duration_s, pending.reason, approved_by=list(self._routing.extension_approvers)
            )

    async def _apply_extension(self, actor: str, duration_s: int, reason: str | None, approved_by: list[str]) -> None:
        # One extension at a time, so two concurrent calls cannot both pass
        # the max-duration check against the same old expiry.
        async with self._extend_lock:
            self._check_extension_fits(duration_s)
            assert self._expires_at is not None and self._spec is not None
            new_expiry = self._expires_at + timedelta(seconds=duration_s)
            checked = self._history_timers  # runs from before it answered 200 whatever happened
            try:
                extended = await steps.extend(
                    self._spec,
                    new_expiry,
                    duration_s,
                    local=self._local_store,
                    still_live=self._extendable if checked else lambda: True,
                )
            except steps.StepFailed as e:
                raise errors.conflict("the grant is no longer active") from e
            if extended and self._extendable():
                self._expires_at = new_expiry
                # Deprovisioning (and webhooks) must see the extended expiry.
                self._spec = self._spec.model_copy(update={"expires_at": new_expiry})
                self._extensions.append(Decision(actor=actor, at=workflow.now(), reason=reason, duration_s=duration_s))
                self._publish()
                self._audit.emit(
                    AuditEventType.EXTENDED,
                    actor=actor,
                    reason=reason,
                    duration_s=duration_s,
                    expires_at=new_expiry,
                    approved_by=approved_by,
                )
                if approved_by:
                    self._notify_decided(
                        EventKind.EXTENDED,
                        approved_by[-1],
                        reason,
                        expires_at=new_expiry,
                        extension_s=duration_s,
                        principal=self._principal,
                    )
            elif checked:
                # Revoked or expired while the target was being extended: say so.
                raise errors.conflict(f"the grant ended ({self._end_word()}) before the extension took effect")

    def _extendable(self) -> bool:
        return self._status is Status.ACTIVE and self._revocation is None and not self._ending

    def _end_word(self) -> str:
        return "revoked" if self._revocation is not None else "expired"

    def _check_extension_fits(self, duration_s: int) -> None:
        assert self._expires_at is not None and self._activated_at is not None
        total = self._expires_at - self._activated_at + timedelta(seconds=duration_s)
        limit = self._req.policy.max_duration_s
        if total > timedelta(seconds=limit):
            raise errors.invalid(
                "duration",
                f"extension would make the grant {format_duration(int(total.total_seconds()))} long; "
                f"the maximum for {self._req.resource} is {format_duration(limit)}",
            )
