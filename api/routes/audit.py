"""``GET /v1/audit``: every lifecycle event of a time window, as JSON Lines, for auditors.
``GET /v1/audit/verify``: the log's hash chain checked against its anchors in Temporal.

The source is the hash-chained audit log (core/audit_log.py) that the workflow
fills through the audit activity: it lives in the data dir the API shares with
the worker and is never pruned. Temporal (history, visibility, the ``Jit*``
search attributes, ``GET /v1/requests``) is the live view of the same requests,
but only for the namespace's retention after a request closes; the audit log
outlives it. For a request still within retention both tell the same story
(tests/test_audit.py checks them against each other).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from temporalio.service import RPCError

from api import errors, listing
from api.deps import CurrentUser, Engine, SettingsDep, TemporalClient
from api.openapi_errors import SIGNED_IN, documented
from core.audit import AuditEvent
from core.audit_anchors import read_anchors
from core.audit_chain import Anchor
from core.audit_store import STORE_ERRORS, open_audit_log

router = APIRouter(prefix="/v1", tags=["audit"])

NDJSON = "application/x-ndjson"
_LOST_PLUS = re.compile(r"(\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?) (\d{2}:?\d{2})$")
_TIME_RULE = "must be an ISO 8601 date-time with a time zone, e.g. 2026-01-01T09:00:00Z"


def _moment(value: str | None, field: str) -> datetime | None:
    if value is None:
        return None
    # "...T09:00:00+02:00" sent unencoded arrives as "...T09:00:00 02:00": put the + back.
    value = _LOST_PLUS.sub(r"\1+\2", value.strip())
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise errors.Invalid(f"{field}: {_TIME_RULE}", field=field) from None
    if moment.tzinfo is None:
        raise errors.Invalid(f"{field}: {_TIME_RULE}", field=field)
    return moment


def _filter(value: str | None, field: str) -> str | None:
    if value is None:
        return None
    listing.quote(value, field)  # the list endpoint's rule: 422 naming the field if it does not hold
    return value


@router.get(
    "/audit",
    response_class=StreamingResponse,
    responses={
        200: {"content": {NDJSON: {}}, "description": "one audit event (JSON) per line"},
        **documented(*SIGNED_IN, 403, 422),
    },
)
async def export_audit(
    user: CurrentUser,
    engine: Engine,
    settings: SettingsDep,
    from_: Annotated[str | None, Query(alias="from", max_length=64, description="ISO 8601, inclusive")] = None,
    to: Annotated[str | None, Query(max_length=64, description="ISO 8601, exclusive")] = None,
    requester: Annotated[str | None, Query(pattern=listing.VALUE_PATTERN)] = None,
    resource: Annotated[str | None, Query(pattern=listing.VALUE_PATTERN)] = None,
) -> StreamingResponse:
    """Every lifecycle event with ``from <= at < to``, ordered by time, request id, then seq.

    One JSON object a line: ``event_id``, ``request_id``, ``seq``, ``type`` (requested,
    approved, escalated, denied, cancelled, timed_out, provisioned, failed, extended,
    revoked, expired, reviewed), ``at``, ``actor``, ``reason``, ``requester``,
    ``resource``, ``action`` and ``details`` (for ``requested``: the policy decision and
    ``policy_version``). Auditors and admins only (the policies' ``audit``).
    """
    if not engine.may_audit(user).allowed:
        raise errors.Forbidden("only auditors and admins may read the audit log")
    since, until = _moment(from_, "from"), _moment(to, "to")
    if since is not None and until is not None and until < since:
        raise errors.Invalid("to: must not be before from", field="to")
    requester, resource = _filter(requester, "requester"), _filter(resource, "resource")
    if not settings.audit_dsn and not settings.audit_log_path.is_file():
        raise errors.Unavailable("no audit log on this server: the API reads it from the worker's data dir")
    log = open_audit_log(settings, create=False)
    events = log.export(since=since, until=until, requester=requester, resource=resource)
    try:
        # The first row before the 200: an unreadable log is a 503, not a cut stream.
        first = await run_in_threadpool(next, events, None)
    except STORE_ERRORS as e:
        # PostgreSQL's errors may name hosts and users: not for the client.
        why = "" if settings.audit_dsn else f" ({e})"
        raise errors.Unavailable(f"the audit log cannot be read now{why}; try again shortly") from e
    return StreamingResponse(_lines(first, events), media_type=NDJSON, headers={"Cache-Control": "no-store"})


def _lines(first: AuditEvent | None, rest: Iterator[AuditEvent]) -> Iterator[str]:
    if first is None:
        return
    yield first.model_dump_json() + "\n"
    for event in rest:
        yield event.model_dump_json() + "\n"


class BrokenRecord(BaseModel):
    n: int
    event_id: str
    why: str


class AuditVerification(BaseModel):
    ok: bool
    records: int  # how many records chain from the start (up to the broken one)
    anchors: int  # how many anchors in Temporal the log was checked against
    newest_anchor: Anchor | None
    broken: BrokenRecord | None


@router.get("/audit/verify", responses=documented(*SIGNED_IN, 403))
async def verify_audit(
    user: CurrentUser, engine: Engine, settings: SettingsDep, client: TemporalClient
) -> AuditVerification:
    """Recompute the audit log's hash chain and check it against every anchor Temporal holds.

    ``ok`` false names the first record that was edited, removed or reordered,
    or the anchored record the log no longer has (newest records cut off, or
    all of them). What ``jit audit verify`` does on the worker's machine.
    Auditors and admins only.
    """
    if not engine.may_audit(user).allowed:
        raise errors.Forbidden("only auditors and admins may verify the audit log")
    if not settings.audit_dsn and not settings.audit_log_path.is_file():
        raise errors.Unavailable("no audit log on this server: the API reads it from the worker's data dir")
    try:
        anchors = await read_anchors(client, settings)
    except RPCError as e:
        raise errors.Unavailable("the audit anchors cannot be read from Temporal now; try again shortly") from e
    log = open_audit_log(settings, create=False)
    try:
        checked, broken = await run_in_threadpool(log.check, anchors)
    except STORE_ERRORS as e:
        why = "" if settings.audit_dsn else f" ({e})"
        raise errors.Unavailable(f"the audit log cannot be read now{why}; try again shortly") from e
    return AuditVerification(
        ok=broken is None,
        records=checked,
        anchors=len(anchors),
        newest_anchor=anchors[0] if anchors else None,
        broken=BrokenRecord(n=broken.n, event_id=broken.event_id, why=broken.why) if broken else None,
    )
