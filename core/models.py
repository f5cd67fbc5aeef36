"""The messages the API and the workflow exchange: one module both sides import.

Every workflow input, update input and result is its own model so that fields
can be added later without breaking the histories of running requests.
Nothing in here may hold a secret: these models are stored in Temporal history.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field

from core.notify_models import NotificationPlan


class Status(StrEnum):
    PENDING = "pending"
    SCHEDULED = "scheduled"  # approved, waiting for start_at
    PROVISIONING = "provisioning"
    ACTIVE = "active"
    DENIED = "denied"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    FAILED = "failed"
    EXPIRED = "expired"
    REVOKED = "revoked"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset(
    {
        Status.DENIED,
        Status.CANCELLED,
        Status.TIMED_OUT,
        Status.FAILED,
        Status.EXPIRED,
        Status.REVOKED,
    }
)


class Actor(BaseModel):
    """An authenticated caller, as resolved by the API from its identity token."""

    sub: str
    groups: list[str] = Field(default_factory=list)
    # Step-up: the identity token says a second factor was used (amr/acr).
    mfa: bool = False
    # "service": a workload (a CI job's token from an issuer of kind workload), the
    # Cedar principal Jit::Service::"<sub>" with these attributes (claims the issuer
    # maps: repository, ref, …). Defaults keep requests filed before them decoding.
    kind: Literal["user", "service"] = "user"
    attributes: dict[str, str] = Field(default_factory=dict)

    def in_any(self, groups: list[str]) -> bool:
        return bool(set(self.groups) & set(groups))


class StageSnapshot(BaseModel):
    """One approval stage as the policy decided it when the request was filed."""

    name: str
    groups: list[str]
    approvals: int = 1
    # No decision within this long: escalate_to groups may approve too.
    escalate_after_s: int | None = None
    escalate_to: list[str] = Field(default_factory=list)


class ResourcePolicy(BaseModel):
    """What the catalog said about the resource when the request was filed.

    Snapshotted into the workflow input so that a catalog edit never changes
    the rules of a request already running (and never breaks replay).
    """

    approvals_required: int
    approver_groups: list[str]
    max_duration_s: int
    approval_timeout_s: int
    admin_groups: list[str] = Field(default_factory=list)
    # The catalog's ``provisioner:`` block (type postgres | webhook | none).
    # Names secrets only indirectly (``dsn_env``): it is stored in history.
    provisioner: dict[str, Any] = Field(default_factory=dict)
    # Ordered approval stages; empty means one stage of approvals_required
    # from approver_groups (requests filed before stages existed).
    stages: list[StageSnapshot] = Field(default_factory=list)
    # Granted at once by break-glass: a post-hoc review by review_groups follows.
    break_glass: bool = False
    review_groups: list[str] = Field(default_factory=list)
    # Extending past what was approved needs approval again (from the first
    # stage's groups): approvals are bound to the exact request.
    extension_approval: bool = False
    # Why the policy decided as it did (Cedar policy ids), for the audit trail.
    reasons: list[str] = Field(default_factory=list)

    def effective_stages(self) -> list[StageSnapshot]:
        if self.stages:
            return self.stages
        if not self.approvals_required:
            return []
        return [StageSnapshot(name="approval", groups=self.approver_groups, approvals=self.approvals_required)]


class AccessRequestInput(BaseModel):
    id: str
    requester: Actor
    resource: str
    action: str
    duration_s: int
    reason: str
    ticket: str | None = None
    start_at: datetime | None = None
    created_at: datetime
    policy: ResourcePolicy
    policy_version: str
    # Where notifications go (config/notifications.yaml, decided at filing);
    # None: none are sent (and requests filed before notifications existed).
    notify: NotificationPlan | None = None


class ApproveInput(BaseModel):
    actor: Actor
    comment: str | None = None
    # The Cedar policies that permitted this approver (checked by the API).
    permitted_by: list[str] = Field(default_factory=list)


class AcknowledgeInput(BaseModel):
    """Closes the post-hoc review of a break-glass grant."""

    actor: Actor
    comment: str | None = None


class DenyInput(BaseModel):
    actor: Actor
    reason: str


class CancelInput(BaseModel):
    actor: Actor
    reason: str | None = None


class RevokeInput(BaseModel):
    actor: Actor
    reason: str
    # The Cedar policies that let a non-requester revoke (checked by the API).
    permitted_by: list[str] = Field(default_factory=list)


class ExtendInput(BaseModel):
    actor: Actor
    duration_s: int
    reason: str


class Approval(BaseModel):
    approver: str
    at: datetime
    comment: str | None = None
    stage: str | None = None
    # Hash of what was approved (requester, resource, action, duration, start):
    # an approval never carries over to a changed request.
    binding: str | None = None
    permitted_by: list[str] = Field(default_factory=list)


class Decision(BaseModel):
    """Who ended or changed a request, and why (deny, cancel, revoke, extend)."""

    actor: str
    at: datetime
    reason: str | None = None
    # For an extension: how much time it added.
    duration_s: int | None = None


class Grant(BaseModel):
    """What the provisioning activity records: no secret, only the facts."""

    request_id: str
    requester: str
    resource: str
    action: str
    activated_at: datetime
    expires_at: datetime


class RevokeResult(BaseModel):
    request_id: str
    revoked_at: datetime


class AccessRequestView(BaseModel):
    """A request as clients see it: the query result and the workflow result."""

    id: str
    status: Status
    requester: str
    resource: str
    action: str
    duration_s: int
    reason: str
    ticket: str | None = None
    start_at: datetime | None = None
    approvals_required: int
    approver_groups: list[str]
    approvals: list[Approval] = Field(default_factory=list)
    created_at: datetime
    approved_at: datetime | None = None
    activated_at: datetime | None = None
    expires_at: datetime | None = None
    ended_at: datetime | None = None
    denial: Decision | None = None
    cancellation: Decision | None = None
    revocation: Decision | None = None
    extensions: list[Decision] = Field(default_factory=list)
    failure: str | None = None
    # Set once the provisioner has checked the target: no access left.
    revocation_verified_at: datetime | None = None
    # Set while revocation or an audit-log write keeps failing: an operator must look
    # (both retry forever). JitAlert tells which: revoke_failing or audit_failing.
    alert: str | None = None
    principal: str | None = None  # e.g. the database role that held the access
    # The request's workflow ended outside jit-access (terminated in Temporal UI):
    # the API says so, and the reconciler revokes what it left (activities/reconcile.py).
    orphaned: bool = False
    # Approval routing: the stage now waiting, and which groups may act in it.
    stage: str | None = None
    eligible_groups: list[str] = Field(default_factory=list)
    escalated: bool = False
    break_glass: bool = False
    review: Decision | None = None  # the acknowledgement of a break-glass grant
    review_pending: bool = False
    # An extension waiting for approval (extension_approval policies).
    pending_extension: Decision | None = None
    policy_reasons: list[str] = Field(default_factory=list)
    policy_version: str

    @classmethod
    def of(cls, req: AccessRequestInput, status: Status, **state: Any) -> AccessRequestView:
        """``req`` as filed, with what has happened to it since (``state``): the workflow's
        view and the API's before the workflow has run are this one shape."""
        return cls(
            id=req.id,
            status=status,
            requester=req.requester.sub,
            resource=req.resource,
            action=req.action,
            duration_s=req.duration_s,
            reason=req.reason,
            ticket=req.ticket,
            start_at=req.start_at,
            approvals_required=req.policy.approvals_required,
            approver_groups=req.policy.approver_groups,
            created_at=req.created_at,
            break_glass=req.policy.break_glass,
            policy_reasons=req.policy.reasons,
            policy_version=req.policy_version,
            **state,
        )


# -- the reconciler (activities/reconcile.py) ------------------------------------


class ReconcileInput(BaseModel):
    # None: everything (the schedule); else only these requests (POST …/revoke).
    request_ids: list[str] | None = None


class OrphanRevoked(BaseModel):
    request_id: str
    workflow_status: str
    removed: list[str] = Field(default_factory=list)


class ReconcileReport(BaseModel):
    checked: int = 0
    revoked: list[OrphanRevoked] = Field(default_factory=list)
