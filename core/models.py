"""The messages the API and the workflow exchange: one module both sides import.

Every workflow input, update input and result is its own model so that fields
can be added later without breaking the histories of running requests.
Nothing in here may hold a secret: these models are stored in Temporal history.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


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

    def in_any(self, groups: list[str]) -> bool:
        return bool(set(self.groups) & set(groups))


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


class ApproveInput(BaseModel):
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


class ExtendInput(BaseModel):
    actor: Actor
    duration_s: int
    reason: str


class Approval(BaseModel):
    approver: str
    at: datetime
    comment: str | None = None


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
    # Set while revocation keeps failing: an operator must look (it retries forever).
    alert: str | None = None
    principal: str | None = None  # e.g. the database role that held the access
    policy_version: str
