"""The provisioner contract: make access real in a target system, and take it back.

A provisioner is built for one catalog entry (its ``provisioner:`` block) and
is driven by the provisioning activities, so every method may be retried by
Temporal at any time:

- ``grant`` is idempotent by request id: a repeat finds what the first call
  made and never creates a second principal.
- ``revoke`` of something already gone succeeds.
- ``verify_revoked`` looks, independently of ``revoke``'s own bookkeeping,
  whether any access of the request is left.

Outcomes go into Temporal history: they name principals, never a secret.
Failures that retrying cannot fix raise ``core.provisioners.errors.ProvisionerError``; anything
else (connection refused, lock timeout) is left to Temporal's retries.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from pydantic import AwareDatetime, BaseModel, Field

from core import provisioners

# activity.heartbeat, or a no-op outside an activity.
Heartbeat = Callable[..., None]


def no_heartbeat(*_details: Any) -> None:
    pass


class GrantSpec(BaseModel):
    """What to provision: the grant's facts plus the catalog's ``provisioner:`` block.

    ``settings`` names secrets only indirectly (``dsn_env``, ``secret_env``):
    this model is an activity input, stored in history.
    """

    request_id: str = Field(min_length=1)
    requester: str = Field(min_length=1)
    resource: str
    action: str
    activated_at: AwareDatetime
    expires_at: AwareDatetime
    settings: dict[str, Any] = Field(default_factory=dict)

    @property
    def provisioner(self) -> str:
        return provisioners.type_of(self.settings)


class GrantOutcome(BaseModel):
    request_id: str
    provisioner: str
    # The principal that holds the access (a database role), for audit.
    principal: str | None = None
    # False when a repeated grant found the access already in place.
    created: bool = True
    expires_at: datetime


class RevokeOutcome(BaseModel):
    request_id: str
    provisioner: str
    removed: list[str] = Field(default_factory=list)
    sessions_terminated: int = 0
    already_gone: bool = False


@runtime_checkable
class Provisioner(Protocol):
    name: str

    def grant(self, spec: GrantSpec) -> GrantOutcome: ...

    def extend(self, request_id: str, expires_at: datetime) -> None: ...

    def revoke(self, request_id: str) -> RevokeOutcome: ...

    def verify_revoked(self, request_id: str) -> bool: ...


class NoneProvisioner:
    """For resources whose access is the signed token alone (the grant store is enough)."""

    name = "none"

    def grant(self, spec: GrantSpec) -> GrantOutcome:
        return GrantOutcome(request_id=spec.request_id, provisioner=self.name, expires_at=spec.expires_at)

    def extend(self, request_id: str, expires_at: datetime) -> None:
        pass

    def revoke(self, request_id: str) -> RevokeOutcome:
        return RevokeOutcome(request_id=request_id, provisioner=self.name)

    def verify_revoked(self, request_id: str) -> bool:
        return True
