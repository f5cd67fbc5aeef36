"""A new request, before its workflow runs: its id, its Temporal summary and search attributes, how it reads until then.

Pure functions of the create path (api/requests_service.py): an Idempotency-Key
names one request per caller; a retry with the same key and body is answered
with the first, with another body refused.
"""

from __future__ import annotations

import uuid

from temporalio.common import SearchAttributePair, TypedSearchAttributes

from api import errors
from api.schemas import CreateRequest
from core.durations import format_duration
from core.models import AccessRequestInput, AccessRequestView, Actor, Status
from core.temporal import SA_ACTION, SA_APPROVER_GROUPS, SA_BREAK_GLASS, SA_REQUESTER, SA_RESOURCE, SA_STATUS

_IDEMPOTENCY_NS = uuid.UUID("6f1c2a4e-3b7d-4c55-9a0e-2d8f1e7b9c31")


def request_id_for(actor: Actor, idempotency_key: str | None) -> str:
    if idempotency_key is None:
        return str(uuid.uuid4())
    if not 1 <= len(idempotency_key) <= 200:
        raise errors.Invalid("Idempotency-Key must be 1 to 200 characters", field="Idempotency-Key")
    return str(uuid.uuid5(_IDEMPOTENCY_NS, f"{actor.sub}\n{idempotency_key}"))


def same_request(existing: AccessRequestView, actor: Actor, body: CreateRequest) -> AccessRequestView:
    """The request an Idempotency-Key already started, if ``body`` asks for the same; else 409."""
    filed = (
        existing.requester,
        existing.resource,
        existing.action,
        existing.duration_s,
        existing.reason,
        existing.ticket,
        existing.break_glass,
    )
    if filed != (actor.sub, body.resource, body.action, body.duration, body.reason, body.ticket, body.break_glass):
        raise errors.Conflict("Idempotency-Key was already used for a different request", field="Idempotency-Key")
    return existing


def summary(req: AccessRequestInput) -> str:
    text = f"{req.requester.sub}: {req.action} {req.resource} for {format_duration(req.duration_s)}"
    return f"{text} — {req.ticket}" if req.ticket else text


def search_attributes(req: AccessRequestInput) -> TypedSearchAttributes:
    """What Temporal UI and the lists filter a new request by, before its workflow publishes its own."""
    attributes = [
        SearchAttributePair(SA_REQUESTER, req.requester.sub),
        SearchAttributePair(SA_RESOURCE, req.resource),
        SearchAttributePair(SA_ACTION, req.action),
        SearchAttributePair(SA_STATUS, Status.PENDING.value),
        SearchAttributePair(SA_APPROVER_GROUPS, req.policy.approver_groups),
    ]
    if req.policy.break_glass:
        attributes.append(SearchAttributePair(SA_BREAK_GLASS, True))
    return TypedSearchAttributes(attributes)


def initial_view(req: AccessRequestInput) -> AccessRequestView:
    """What a new request looks like before a worker has run it."""
    stages = req.policy.effective_stages()
    auto = not stages
    status = (Status.SCHEDULED if req.start_at else Status.PROVISIONING) if auto else Status.PENDING
    return AccessRequestView.of(
        req,
        status,
        approved_at=req.created_at if auto else None,
        stage=stages[0].name if stages else None,
        eligible_groups=list(stages[0].groups) if stages else [],
    )
