"""Listing requests from Temporal visibility: the query, the caller's scope, sealed page tokens.

Every value that goes into a visibility query is quoted by :func:`quote` (subjects
as identity providers spell them: ``auth0|123``, emails, URLs, an apostrophe; only
control characters are refused), and a page token is sealed to the caller and the
query it was issued for (api/page_tokens.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from temporalio.client import Client, WorkflowExecution
from temporalio.common import SearchAttributeKey
from temporalio.service import RPCError

from api import errors
from api.page_tokens import InvalidPageToken, PageTokens
from api.schemas import RequestPage, RequestSummary
from core.models import Actor, Status
from core.temporal import (
    SA_ACTION,
    SA_APPROVER_GROUPS,
    SA_APPROVERS,
    SA_BREAK_GLASS,
    SA_EXPIRES_AT,
    SA_EXTENSION_PENDING,
    SA_REQUESTER,
    SA_RESOURCE,
    SA_REVIEW,
    SA_STATUS,
    WORKFLOW_ID_PREFIX,
)
from workflows.access_request import AccessRequestWorkflow

# What a filter value may be: any text but control characters (which no identity provider
# puts in a subject or group, and which would only serve to hide something in a log).
VALUE_PATTERN = r"^[^\x00-\x1f\x7f]{1,400}$"
_VALUE = re.compile(VALUE_PATTERN)
QUERY_TIMEOUT = timedelta(seconds=5)


def base_clauses(actor: Actor, *, sees_everything: bool) -> list[str]:
    clauses = [f"WorkflowType = '{AccessRequestWorkflow.__name__}'"]
    if not sees_everything:
        clauses.append(_scope_clause(actor))
    return clauses


def to_approve_clauses(actor: Actor) -> list[str] | None:
    """Pending requests, and active ones with an extension waiting, that the caller's groups
    decide; None if no group can."""
    groups_ = _quotable(actor.groups)
    if not groups_:
        return None
    groups = ", ".join(quote(g, "to_approve") for g in groups_)
    status, extending = SA_STATUS.name, SA_EXTENSION_PENDING.name
    return [
        f"({status} = '{Status.PENDING}' OR ({status} = '{Status.ACTIVE}' AND {extending} = true))",
        f"{SA_APPROVER_GROUPS.name} IN ({groups})",
        f"{SA_REQUESTER.name} != {quote(actor.sub, 'to_approve')}",
    ]


REVIEW_PENDING = [f"{SA_BREAK_GLASS.name} = true", f"{SA_REVIEW.name} = 'pending'"]


def equals(key: SearchAttributeKey[Any], value: str, field: str) -> str:
    """A clause ``key = 'value'``; ``field`` names the input in the 400 a bad value gets."""
    return f"{key.name} = {quote(value, field)}"


async def fetch_page(
    client: Client,
    page_tokens: PageTokens,
    actor: Actor,
    clauses: list[str],
    *,
    page_size: int,
    page_token: str | None,
    keep: Callable[[RequestSummary], bool] = lambda _: True,
) -> RequestPage:
    query = " AND ".join(clauses)
    scope = f"{actor.sub}\n{query}"
    try:
        token = page_tokens.open(scope, page_token) if page_token else None
    except InvalidPageToken as e:
        raise errors.Invalid(str(e), field="page_token") from None
    iterator = client.list_workflows(query, page_size=page_size, next_page_token=token, rpc_timeout=QUERY_TIMEOUT)
    try:
        await iterator.fetch_next_page()
    except RPCError as e:
        if "page" in e.message.lower() or "token" in e.message.lower():
            raise errors.Invalid("page_token is not a token this API returned", field="page_token") from e
        raise errors.from_rpc_error(e) from e
    executions = sorted(iterator.current_page or [], key=lambda w: w.start_time, reverse=True)
    items = [i for i in map(summary_of, executions) if keep(i)]
    next_token = iterator.next_page_token
    return RequestPage(items=items, next_page_token=page_tokens.seal(scope, next_token) if next_token else None)


def quote(value: str, field: str) -> str:
    """``value`` as a visibility-query string literal: escaped, never restricted beyond ``VALUE_PATTERN``."""
    if not _VALUE.fullmatch(value):
        raise errors.Invalid(f"{field}: must be 1 to 400 characters, none of them a control character", field=field)
    # Temporal's query parser reads \' as a quote, but other backslashes inconsistently (\n is
    # itself, \u starts an escape), and finds no value holding a double quote however it is
    # spelled (tests/test_listing_subjects.py): those two have no reliable spelling in a query.
    if "\\" in value or '"' in value:
        raise errors.Invalid(
            f"{field}: a backslash or a double quote cannot be searched for in Temporal's visibility", field=field
        )
    return "'" + value.replace("'", "\\'") + "'"


def _quotable(groups: list[str]) -> list[str]:
    # A group with a control character cannot be an approver group either: skip it rather
    # than refuse the caller (the identity token is the provider's, not the caller's, doing).
    return [g for g in groups if _VALUE.fullmatch(g)]


def _scope_clause(actor: Actor) -> str:
    mine = equals(SA_REQUESTER, actor.sub, "identity")
    groups = _quotable(actor.groups)
    if not groups:
        return mine
    listed = ", ".join(quote(g, "identity") for g in groups)
    return f"({mine} OR {SA_APPROVER_GROUPS.name} IN ({listed}))"


def summary_of(w: WorkflowExecution) -> RequestSummary:
    sa = w.typed_search_attributes
    status = sa.get(SA_STATUS)
    return RequestSummary(
        id=w.id.removeprefix(WORKFLOW_ID_PREFIX),
        status=Status(status) if status in Status.__members__.values() else None,
        requester=sa.get(SA_REQUESTER),
        resource=sa.get(SA_RESOURCE),
        action=sa.get(SA_ACTION),
        created_at=w.start_time,
        expires_at=sa.get(SA_EXPIRES_AT),
        ended_at=w.close_time,
        approvers=list(sa.get(SA_APPROVERS) or []),
        break_glass=bool(sa.get(SA_BREAK_GLASS)),
        review=sa.get(SA_REVIEW),
        extension_pending=bool(sa.get(SA_EXTENSION_PENDING)),
    )
