"""The REST bodies: what clients send and get back (beside core.models.AccessRequestView)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from core.durations import DurationError, parse_duration
from core.models import Status
from policy import StageSpec

# Messages are the rule only: the API prefixes the field ("duration: must be greater than zero").


def _duration(value: Any) -> int:
    try:
        return parse_duration(value)
    except DurationError as e:
        raise ValueError(str(e)) from e


def _timestamp_text(value: Any) -> Any:
    # pydantic would take a number as Unix time; a client sending one has the type wrong.
    if value is not None and not isinstance(value, str | datetime):
        raise ValueError("must be an ISO 8601 date-time string with a time zone, e.g. 2026-01-01T09:00:00Z")
    return value


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError("must include a time zone, e.g. 2026-01-01T09:00:00Z")
    return value


_TICKET = re.compile(r"^[A-Za-z0-9_.:/#-]+$")


def _ticket(value: str) -> str:
    if not _TICKET.match(value):
        raise ValueError("may hold only letters, digits and _ . : / # -")
    return value


Duration = Annotated[int, BeforeValidator(_duration)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=1000)]
Identifier = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Ticket = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), AfterValidator(_ticket)]
Timestamp = Annotated[datetime | None, BeforeValidator(_timestamp_text), AfterValidator(_aware)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreateRequest(_Body):
    resource: Identifier
    action: Identifier
    duration: Duration = Field(description='ISO 8601 ("PT15M"), seconds (900) or short ("15m")')
    reason: Reason
    ticket: Ticket | None = None
    start_at: Timestamp = None
    # An emergency: access at once, without approvers, reviewed afterwards (if the
    # policies permit the caller to break glass on this resource).
    break_glass: bool = False


class Preview(BaseModel):
    """What ``POST /v1/requests`` would decide for the same body, with nothing started."""

    allowed: bool
    reasons: list[str]
    field: str | None = None  # the request field a refusal blames (a 422 on create)
    auto_approve: bool
    break_glass: bool
    stages: list[StageSpec]  # in order; empty when auto-approved or break-glass
    approvals_required: int
    max_duration_s: int  # the longest this caller may ask for now (0: not at all)
    duration_s: int  # the duration asked, capped at max_duration_s
    policy_version: str


class ApproveBody(_Body):
    comment: Text | None = None


class AcknowledgeBody(_Body):
    comment: Text | None = None


class DenyBody(_Body):
    reason: Reason


class CancelBody(_Body):
    reason: Text | None = None


class RevokeBody(_Body):
    reason: Reason


class ExtendBody(_Body):
    duration: Duration
    reason: Reason


class RequestSummary(BaseModel):
    id: str
    status: Status | None
    requester: str | None
    resource: str | None
    action: str | None
    created_at: datetime
    expires_at: datetime | None = None
    ended_at: datetime | None = None
    approvers: list[str] = Field(default_factory=list)
    break_glass: bool = False
    review: str | None = None  # break-glass only: "pending", then "acknowledged"


class RequestPage(BaseModel):
    items: list[RequestSummary]
    next_page_token: str | None = None


class DatabaseCredentials(BaseModel):
    username: str
    password: str
    host: str | None = None
    port: int | None = None
    dbname: str | None = None


class Credentials(BaseModel):
    access_token: str
    token_type: str = "Bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_at: datetime
    grant_expires_at: datetime
    resource: str
    action: str
    # For resources provisioned in PostgreSQL: a login valid until the grant ends.
    database: DatabaseCredentials | None = None


class Introspection(BaseModel):
    """RFC 7662's answer: ``{"active": false}`` alone, or true with the token's claims (RFC 9068)."""

    active: bool
    token_type: str | None = Field(None, examples=["Bearer"])
    iss: str | None = None
    sub: str | None = Field(None, description="the requester")
    aud: str | None = Field(None, description="the resource")
    scope: str | None = Field(None, description="the action granted")
    action: str | None = None
    client_id: str | None = None
    jti: str | None = Field(None, description="the request id")
    iat: int | None = None
    nbf: int | None = None
    exp: int | None = Field(None, description="never past the grant's expiry")


class ErrorDetail(BaseModel):
    code: str = Field(examples=["bad_request"])
    message: str
    field: str | None = None


class ErrorBody(BaseModel):
    """Every error the API answers (api/errors.py)."""

    error: ErrorDetail
