"""Listing requests from Temporal visibility: the query, the caller's scope, sealed page tokens.

Every value that goes into a visibility query is checked against ``_SAFE_VALUE``
first (no quoting games), and a page token is sealed to the caller and the query
it was issued for (api/page_tokens.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

from temporalio.client import Client, WorkflowExecution
from temporalio.service import RPCError

from api import errors
from api.page_tokens import InvalidPageToken, PageTokens
from api.schemas import RequestPage, RequestSummary
from core.models import Actor, Status
from core.temporal import (
    SA_ACTION,
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

SAFE_PATTERN = r"^[A-Za-z0-9_.:/@+-]{1,200}$"
_SAFE_VALUE = re.compile(SAFE_PATTERN)  # filter values go into a visibility query
QUERY_TIMEOUT = timedelta(seconds=5)


def base_clauses(actor: Actor, *, sees_everything: bool) -> list[str]:
    clauses = [f"WorkflowType = '{AccessRequestWorkflow.__name__}'"]
    if not sees_everything:
        clauses.append(_scope_clause(actor))
    return clauses


def to_approve_clauses(actor: Actor) -> list[str] | None:
    """Pending requests, and active ones with an extension waiting, that the caller's groups
    decide; None if no group can."""
    # A group name that cannot go into a query ("Domain Users") cannot be an approver group
    # either: skip it, as the visibility scope does, rather than refuse the caller.
    safe_groups = [g for g in actor.groups if _SAFE_VALUE.fullmatch(g)]
    if not safe_groups:
        return None
    groups = ", ".join(quote(g, "to_approve") for g in safe_groups)
    return [
        f"(JitStatus = '{Status.PENDING}' OR (JitStatus = '{Status.ACTIVE}' AND JitExtensionPending = true))",
        f"JitApproverGroups IN ({groups})",
        f"JitRequester != {quote(actor.sub, 'to_approve')}",
    ]


REVIEW_PENDING = ["JitBreakGlass = true", "JitReview = 'pending'"]


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
    if not _SAFE_VALUE.fullmatch(value):
        raise errors.Invalid(f"{field}: may hold only letters, digits and _.:/@+-", field=field)
    return f"'{value}'"


def _scope_clause(actor: Actor) -> str:
    mine = f"JitRequester = {quote(actor.sub, 'identity')}"
    groups = [g for g in actor.groups if _SAFE_VALUE.fullmatch(g)]
    if not groups:
        return mine
    listed = ", ".join(f"'{g}'" for g in groups)
    return f"({mine} OR JitApproverGroups IN ({listed}))"


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
