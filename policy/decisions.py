"""What the policy engine answers: plain pydantic models, safe to log and to store.

``field`` follows one convention everywhere: a refusal that names a request field
is a broken rule the caller can fix (the API answers 422 naming it); a refusal
without a field means "not allowed" (403).
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from core.catalog import Stage


class StageSpec(BaseModel):
    """One approval stage, in order: ``approvals`` distinct people from ``groups``."""

    name: str
    groups: list[str]
    approvals: int = 1
    escalate_after_s: int | None = None  # after this long pending, escalate_to may approve too
    escalate_to: list[str] = Field(default_factory=list)

    @classmethod
    def of(cls, stage: Stage) -> StageSpec:
        return cls(
            name=stage.name,
            groups=stage.groups,
            approvals=stage.approvals,
            escalate_after_s=stage.escalate_after,
            escalate_to=stage.escalate_to,
        )


class Decision(BaseModel):
    """Yes or no, and why: the Cedar policy ids (with their @reason) or the rule broken.

    Not core.models.Decision (who ended a request): import this one as
    ``from policy import Decision as PolicyDecision`` beside it.
    """

    allowed: bool
    reasons: list[str] = Field(default_factory=list)
    field: str | None = None  # see the module docstring


class RequestDecision(Decision):
    auto_approve: bool = False  # granted without approvers (stages is then empty)
    break_glass: bool = False  # an emergency grant: at once, no approvers
    max_duration_s: int = 0  # the longest this principal may ask for now (0: not at all)
    stages: list[StageSpec] = Field(default_factory=list)
    approval_timeout_s: int = 0
    policy_version: str = ""

    @property
    def needs_approval(self) -> bool:
        return self.allowed and bool(self.stages)


class CatalogAction(BaseModel):
    action: str
    max_duration_s: int  # for this caller, now; 0 if only break-glass is open to them
    approvals_required: int  # sum over stages
    stages: list[StageSpec]
    approval_timeout_s: int
    auto_approve: bool  # some duration is approved at once for this caller
    auto_approve_max_s: int = 0  # up to this long
    break_glass_max_s: int = 0  # 0: no break-glass for this caller
    require_reason: bool = True
    require_ticket: bool = False


class CatalogView(BaseModel):
    resource: str
    description: str
    kind: str
    environment: str
    sensitivity: str
    actions: list[CatalogAction]
