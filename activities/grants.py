"""Issue, extend and revoke a grant in the grant store.

Synchronous activities (run on the worker's thread pool): SQLite is blocking.
Each is idempotent by request id, so Temporal may retry any of them freely.
The access token itself is never produced here: the API signs short-lived
tokens on demand from the grant, so no token ever enters workflow history.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

from core.grants import GrantRevokedError, GrantStore
from core.metrics import WorkerMetrics
from core.models import Grant, RevokeResult


class IssueGrantInput(BaseModel):
    request_id: str
    requester: str
    resource: str
    action: str
    # Decided by the workflow (workflow time), so its timer and the store agree.
    activated_at: datetime
    expires_at: datetime
    # For the jit_time_to_approve_seconds metric: when the request was filed and
    # when its last required approval came. None (not observed) when the request
    # was auto-approved, and in histories recorded before these fields existed.
    requested_at: datetime | None = None
    approved_at: datetime | None = None


class ExtendGrantInput(BaseModel):
    request_id: str
    expires_at: datetime


class RevokeGrantInput(BaseModel):
    request_id: str
    reason: str


class GrantActivities:
    def __init__(self, store: GrantStore, metrics: WorkerMetrics | None = None):
        self._store = store
        self._metrics = metrics or WorkerMetrics()

    @activity.defn
    def issue_grant(self, input: IssueGrantInput) -> Grant:
        first = self._store.lookup(input.request_id) is None  # a retry observes nothing twice
        try:
            row = self._store.record(
                request_id=input.request_id,
                requester=input.requester,
                resource=input.resource,
                action=input.action,
                activated_at=input.activated_at,
                expires_at=input.expires_at,
            )
        except GrantRevokedError as e:
            raise ApplicationError(str(e), type="GrantRevoked", non_retryable=True) from e
        activity.logger.info("grant issued", extra={"request_id": input.request_id})
        if first and input.requested_at is not None and input.approved_at is not None:
            self._metrics.observe_approval(input.requested_at, input.approved_at)
        return Grant(
            request_id=row.request_id,
            requester=row.requester,
            resource=row.resource,
            action=row.action,
            activated_at=row.activated_at,
            expires_at=row.expires_at,
        )

    @activity.defn
    def extend_grant(self, input: ExtendGrantInput) -> None:
        try:
            self._store.extend(input.request_id, input.expires_at)
        except GrantRevokedError as e:
            raise ApplicationError(str(e), type="GrantRevoked", non_retryable=True) from e

    @activity.defn
    def revoke_grant(self, input: RevokeGrantInput) -> RevokeResult:
        before = self._store.lookup(input.request_id)
        revoked_at = self._store.revoke(input.request_id)
        if before is not None and before.revoked_at is None:
            # A grant that was live (or expired, awaiting this call) is revoked now:
            # how late, against the expiry it was meant to have. A rollback of a grant
            # never issued, or a retry, observes nothing.
            self._metrics.observe_revocation(before.expires_at, revoked_at)
        activity.logger.info("grant revoked", extra={"request_id": input.request_id, "reason": input.reason})
        return RevokeResult(request_id=input.request_id, revoked_at=revoked_at)
