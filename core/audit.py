"""Lifecycle events for the audit trail: the workflow emits them, the audit log keeps them.

One model for both sides. An event never holds a secret; ``reason`` is the
human's words (request reason, deny/revoke reason, approval comment).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


class AuditEventType(StrEnum):
    REQUESTED = "requested"  # carries the policy decision and version
    APPROVED = "approved"
    ESCALATED = "escalated"
    DENIED = "denied"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    PROVISIONED = "provisioned"
    FAILED = "failed"
    EXTENSION_REQUESTED = "extension_requested"
    EXTENSION_DENIED = "extension_denied"
    EXTENDED = "extended"
    REVOKED = "revoked"
    EXPIRED = "expired"
    REVIEWED = "reviewed"
    # Revoked by the reconciler: the request's workflow had ended (terminated in
    # Temporal UI, a bug) with its grant or its database role still in place.
    ORPHAN_REVOKED = "orphan_revoked"


class AuditEvent(BaseModel):
    # "<request id>:<seq>": the workflow numbers its events, so a retried
    # append is recognised and never written twice.
    event_id: str
    request_id: str
    seq: int
    type: AuditEventType
    at: datetime
    actor: str | None = None
    reason: str | None = None
    requester: str
    resource: str
    action: str
    details: dict[str, Any] = Field(default_factory=dict)
