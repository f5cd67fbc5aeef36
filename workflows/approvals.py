"""Approval routing: ordered stages, N distinct approvers each, escalation; and who approves an extension.

Plain deterministic state, owned by the workflow: the workflow's update
validators ask ``check``, its handlers call ``record``, its timer loop asks
``escalation_at``. Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from core import errors
    from core.models import AccessRequestInput, Actor, Approval, StageSnapshot


def binding_of(req: AccessRequestInput) -> str:
    """What an approval approves: a changed request is a different request."""
    start = req.start_at.isoformat() if req.start_at else "now"
    text = "\n".join([req.requester.sub, req.resource, req.action, str(req.duration_s), start])
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:32]


class ApprovalRouting:
    def __init__(self, req: AccessRequestInput, started_at: datetime):
        self._requester = req.requester.sub
        self.stages: list[StageSnapshot] = req.policy.effective_stages()
        self.binding = binding_of(req)
        self.index = 0
        self.approvals: list[Approval] = []
        self.escalated = False
        self._stage_started_at = started_at
        self.extension_approvers: list[str] = []  # of the extension waiting, if any

    @property
    def done(self) -> bool:
        return self.index >= len(self.stages)

    @property
    def stage(self) -> StageSnapshot | None:
        return None if self.done else self.stages[self.index]

    def eligible_groups(self) -> list[str]:
        stage = self.stage
        if stage is None:
            return []
        extra = stage.escalate_to if self.escalated else []
        return list(dict.fromkeys([*stage.groups, *extra]))

    def check(self, actor: Actor, verb: str) -> None:
        """Raise the refusal an approver gets; pure, as validators must be."""
        if actor.sub == self._requester:
            raise errors.forbidden(f"you cannot {verb} your own request")
        stage = self.stage
        groups = self.eligible_groups()
        if stage is None or not actor.in_any(groups):
            who = ", ".join(groups) or "nobody"
            where = f" at stage {stage.name!r}" if stage and len(self.stages) > 1 else ""
            raise errors.forbidden(f"only members of {who} may {verb} this request{where}")
        if verb == "approve" and any(a.approver == actor.sub for a in self.approvals):
            raise errors.conflict("you have already approved this request; each approver counts once")

    def record(self, approval: Approval, now: datetime) -> bool:
        """Count one approval; returns True when the last stage is complete."""
        stage = self.stage
        assert stage is not None
        self.approvals.append(approval.model_copy(update={"stage": stage.name, "binding": self.binding}))
        if sum(1 for a in self.approvals if a.stage == stage.name) >= stage.approvals:
            self.index += 1
            self.escalated = False
            self._stage_started_at = now
        return self.done

    # -- an extension past what was approved (extension_approval): the first stage's groups decide

    def check_extension(self, actor: Actor, verb: str) -> None:
        """The refusal an extension's approver gets; pure, as validators must be."""
        if actor.sub == self._requester:
            raise errors.forbidden(f"you cannot {verb} your own extension")
        groups = self.stages[0].groups if self.stages else []
        if not actor.in_any(groups):
            raise errors.forbidden(f"only members of {', '.join(groups) or 'nobody'} may {verb} this extension")
        if verb == "approve" and actor.sub in self.extension_approvers:
            raise errors.conflict("you have already approved this extension")

    def new_extension(self) -> None:
        self.extension_approvers = []

    def record_extension(self, approver: str) -> bool:
        """Count one approval of the waiting extension; returns True when it has enough."""
        self.extension_approvers.append(approver)
        return len(self.extension_approvers) >= self.stages[0].approvals

    def escalation_at(self) -> datetime | None:
        stage = self.stage
        if stage is None or self.escalated or not stage.escalate_after_s or not stage.escalate_to:
            return None
        return self._stage_started_at + timedelta(seconds=stage.escalate_after_s)

    def escalate(self) -> None:
        self.escalated = True
