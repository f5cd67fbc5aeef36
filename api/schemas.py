"""The REST bodies: what clients send and get back (beside core.models.AccessRequestView)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, WithJsonSchema

from core.durations import _CEILING_S, DurationError, parse_duration
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


# Free text is printed by `jit show`, Temporal UI and audit exports: a control character
# (ESC, CR, a newline, C1's CSI) could rewrite what a terminal shows, so none is taken.
# The rules are checked on the text as sent, then surrounding spaces are dropped; the
# same rules are the JSON schema's ``pattern`` (kept in step by tests/test_schema_rules.py).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_C = r"\x00-\x1f\x7f-\x9f"
TEXT_PATTERN = rf"^[^{_C}]*$"
REQUIRED_TEXT_PATTERN = rf"^[^{_C}]*[^\s{_C}][^{_C}]*$"  # and not only spaces
TICKET_PATTERN = r"^ *[A-Za-z0-9_.:/#-]+ *$"
_TICKET = re.compile(TICKET_PATTERN)


def _printable(value: str) -> str:
    found = _CONTROL.search(value)
    if found:
        raise ValueError(
            f"must not contain control characters (U+{ord(found.group()):04X} at character {found.start()}): "
            "no newlines, tabs, escapes or other characters below U+0020 or from U+007F to U+009F"
        )
    return value.strip()


def _not_blank(value: str) -> str:
    if not value:
        raise ValueError("must not be empty")
    return value


def _ticket(value: str) -> str:
    if not _TICKET.fullmatch(value):  # not match: "$" takes a trailing newline
        raise ValueError("may hold only letters, digits and _ . : / # -")
    return value.strip()


def _text(max_length: int, *, required: bool) -> Any:
    pattern = REQUIRED_TEXT_PATTERN if required else TEXT_PATTERN
    checks = [AfterValidator(_printable), *([AfterValidator(_not_blank)] if required else [])]
    return Annotated[str, Field(max_length=max_length, json_schema_extra={"pattern": pattern}), *checks]


# A duration in the schema: seconds (> 0), or text the parser reads (zero is refused there).
_DURATION_SCHEMA = {
    "anyOf": [
        {"type": "integer", "exclusiveMinimum": 0, "maximum": _CEILING_S},
        {
            "type": "string",
            # The shapes the parser reads, loosely (it names the exact rule): never empty.
            "pattern": r"^ *(?:[Pp][0-9TDHMSdhms]+|[0-9]+[dhmsDHMS]?(?:[0-9]+[dhmsDHMS])*) *$",
            "maxLength": 32,
        },
    ],
    "description": 'ISO 8601 ("PT15M"), seconds (900) or short ("15m"); greater than zero',
    "examples": ["PT15M", 900, "15m"],
}
Duration = Annotated[int, BeforeValidator(_duration), WithJsonSchema(_DURATION_SCHEMA)]
Reason = _text(1000, required=True)
Text = _text(1000, required=False)
Identifier = _text(200, required=True)
Ticket = Annotated[
    str, Field(min_length=1, max_length=100, json_schema_extra={"pattern": TICKET_PATTERN}), AfterValidator(_ticket)
]
Timestamp = Annotated[datetime | None, BeforeValidator(_timestamp_text), AfterValidator(_aware)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreateRequest(_Body):
    resource: Identifier
    action: Identifier
    duration: Duration
    reason: Reason
    ticket: Ticket | None = None
    start_at: Timestamp = None
    # An emergency: access at once, without approvers, reviewed afterwards (if the
    # policies permit the caller to break glass on this resource).
    break_glass: StrictBool = False


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
    break_glass: StrictBool = False
    review: str | None = None  # break-glass only: "pending", then "acknowledged"
    extension_pending: StrictBool = False  # an extension of this active grant waits for approval


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


# The dev identity issuer (api/routes/dev.py): names as the request list can query them.
DEV_NAME_PATTERN = r"^[A-Za-z0-9_.:/@+-]{1,200}$"  # api/listing.py SAFE_PATTERN
DEV_TOKEN_MAX_TTL_S = 24 * 3600
DevName = Annotated[str, Field(pattern=DEV_NAME_PATTERN, min_length=1, max_length=200)]


def _dev_ttl(value: int) -> int:
    if value > DEV_TOKEN_MAX_TTL_S:
        raise ValueError("must be at most 24h: a dev token is for a working day")
    return value


class DevTokenBody(_Body):
    user: DevName = Field(description="the token's subject (sub)")
    groups: list[DevName] = Field(default_factory=list, max_length=50)
    mfa: StrictBool = Field(False, description='signed in with a second factor (amr: ["pwd", "mfa"])')
    ttl: Annotated[Duration, AfterValidator(_dev_ttl)] = Field(12 * 3600, description="at most 24h")


class DevToken(BaseModel):
    token: str
    token_type: str = "Bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_at: datetime
