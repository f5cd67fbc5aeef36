"""Access requests over Temporal: start, query, list and update the workflows.

Routes stay thin: they authenticate, then call one method here. Object-level
authorization lives here (who may see a request); the workflow's update
validators decide who may change it.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.client import (
    Client,
    RPCTimeoutOrCancelledError,
    WorkflowExecution,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from api import errors
from api.page_tokens import InvalidPageToken, PageTokens
from api.schemas import CreateRequest, RequestPage, RequestSummary
from core.catalog import Catalog
from core.durations import format_duration
from core.models import (
    AccessRequestInput,
    AccessRequestView,
    Actor,
    ApproveInput,
    CancelInput,
    DenyInput,
    ExtendInput,
    RevokeInput,
    Status,
)
from core.settings import Settings
from core.temporal import (
    SA_ACTION,
    SA_APPROVER_GROUPS,
    SA_APPROVERS,
    SA_EXPIRES_AT,
    SA_REQUESTER,
    SA_RESOURCE,
    SA_STATUS,
    WORKFLOW_ID_PREFIX,
    workflow_id,
)
from workflows.access_request import AccessRequestWorkflow

_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9_.:/@+-]{1,200}$")  # filter values go into a visibility query
_IDEMPOTENCY_NS = uuid.UUID("6f1c2a4e-3b7d-4c55-9a0e-2d8f1e7b9c31")
_QUERY_TIMEOUT = timedelta(seconds=5)
_UPDATE_WAIT_S = 30.0
MAX_START_AHEAD = timedelta(days=30)


class RequestService:
    def __init__(self, client: Client, settings: Settings, catalog: Catalog, page_tokens: PageTokens | None = None):
        self._client = client
        self._settings = settings
        self._catalog = catalog
        self._page_tokens = page_tokens or PageTokens()

    # -- create ----------------------------------------------------------------

    async def create(
        self, actor: Actor, body: CreateRequest, idempotency_key: str | None
    ) -> tuple[AccessRequestView, bool]:
        """Start one workflow; returns (request, created). A repeated key returns the first."""
        request_input = self._input_for(actor, body, idempotency_key)
        handle = self._client.get_workflow_handle_for(AccessRequestWorkflow.run, workflow_id(request_input.id))
        try:
            await self._client.start_workflow(
                AccessRequestWorkflow.run,
                request_input,
                id=handle.id,
                task_queue=self._settings.task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                search_attributes=TypedSearchAttributes(
                    [
                        SearchAttributePair(SA_REQUESTER, actor.sub),
                        SearchAttributePair(SA_RESOURCE, request_input.resource),
                        SearchAttributePair(SA_ACTION, request_input.action),
                        SearchAttributePair(SA_STATUS, Status.PENDING.value),
                        SearchAttributePair(SA_APPROVER_GROUPS, request_input.policy.approver_groups),
                    ]
                ),
                static_summary=_summary(request_input),
                static_details=f"Reason: {request_input.reason}\nPolicy: {request_input.policy_version}",
            )
        except WorkflowAlreadyStartedError:
            existing = await self._query(handle)
            if (
                existing.requester,
                existing.resource,
                existing.action,
                existing.duration_s,
                existing.reason,
                existing.ticket,
            ) != (actor.sub, body.resource, body.action, body.duration, body.reason, body.ticket):
                raise errors.Conflict(
                    "Idempotency-Key was already used for a different request", field="Idempotency-Key"
                ) from None
            return existing, False
        except RPCError as e:
            raise errors.from_rpc_error(e) from e
        # Answer with the settled state: active for auto-approved, else pending.
        try:
            view = await asyncio.wait_for(
                handle.execute_update(AccessRequestWorkflow.settled), self._settings.settle_wait_s
            )
        except (TimeoutError, RPCError, RPCTimeoutOrCancelledError):
            view = _initial_view(request_input)
        return view, True

    def _input_for(self, actor: Actor, body: CreateRequest, idempotency_key: str | None) -> AccessRequestInput:
        entry = self._catalog.get(body.resource)
        if entry is None:
            raise errors.Invalid(f"resource {body.resource!r} is not in the catalog", field="resource")
        if body.action not in entry.actions:
            allowed = ", ".join(entry.actions)
            raise errors.Invalid(f"action {body.action!r} is not offered on {entry.id}; one of: {allowed}", field="action")
        policy = self._catalog.policy_for(
            entry, admin_groups=self._settings.admin_groups, ceiling_s=self._settings.max_duration_s
        )
        if body.duration > policy.max_duration_s:
            raise errors.Invalid(
                f"duration {format_duration(body.duration)} exceeds the maximum of "
                f"{format_duration(policy.max_duration_s)} for {entry.id}",
                field="duration",
            )
        now = datetime.now(UTC)
        start_at = body.start_at
        if start_at is not None:
            if start_at <= now:
                start_at = None  # "now or in the past" means now
            elif start_at - now > MAX_START_AHEAD:
                raise errors.Invalid("start_at may be at most 30 days ahead", field="start_at")
        if idempotency_key is not None:
            if not 1 <= len(idempotency_key) <= 200:
                raise errors.Invalid("Idempotency-Key must be 1 to 200 characters", field="Idempotency-Key")
            request_id = str(uuid.uuid5(_IDEMPOTENCY_NS, f"{actor.sub}\n{idempotency_key}"))
        else:
            request_id = str(uuid.uuid4())
        return AccessRequestInput(
            id=request_id,
            requester=actor,
            resource=entry.id,
            action=body.action,
            duration_s=body.duration,
            reason=body.reason,
            ticket=body.ticket,
            start_at=start_at,
            created_at=now,
            policy=policy,
            policy_version=self._catalog.version,
        )

    # -- read --------------------------------------------------------------------

    async def get(self, actor: Actor, request_id: str) -> AccessRequestView:
        view = await self._query(self._handle(request_id))
        if not self._may_see(actor, view):
            raise errors.NotFound("no such request")  # not 403: do not confirm it exists
        return view

    def _may_see(self, actor: Actor, view: AccessRequestView) -> bool:
        return (
            actor.sub == view.requester
            or actor.in_any(view.approver_groups)
            or actor.in_any(self._settings.auditor_groups)
            or actor.in_any(self._settings.admin_groups)
        )

    def sees_everything(self, actor: Actor) -> bool:
        return actor.in_any(self._settings.auditor_groups) or actor.in_any(self._settings.admin_groups)

    async def list(
        self,
        actor: Actor,
        *,
        status: Status | None,
        requester: str | None,
        resource: str | None,
        mine: bool,
        to_approve: bool,
        page_size: int,
        page_token: str | None,
    ) -> RequestPage:
        clauses = [f"WorkflowType = '{AccessRequestWorkflow.__name__}'"]
        if not self.sees_everything(actor):
            clauses.append(_scope_clause(actor))
        if mine:
            clauses.append(f"JitRequester = {_quote(actor.sub, 'mine')}")
        if to_approve:
            # A group name that cannot go into a query ("Domain Users") cannot be an approver group
            # either: skip it, as the visibility scope does, rather than refuse the caller.
            safe_groups = [g for g in actor.groups if _SAFE_VALUE.match(g)]
            if not safe_groups:
                return RequestPage(items=[])
            groups = ", ".join(_quote(g, "to_approve") for g in safe_groups)
            clauses += [
                f"JitStatus = '{Status.PENDING}'",
                f"JitApproverGroups IN ({groups})",
                f"JitRequester != {_quote(actor.sub, 'to_approve')}",
            ]
        if status is not None:
            clauses.append(f"JitStatus = '{status.value}'")
        if requester:
            clauses.append(f"JitRequester = {_quote(requester, 'requester')}")
        if resource:
            clauses.append(f"JitResource = {_quote(resource, 'resource')}")
        query = " AND ".join(clauses)
        scope = f"{actor.sub}\n{query}"
        try:
            token = self._page_tokens.open(scope, page_token) if page_token else None
        except InvalidPageToken as e:
            raise errors.Invalid(str(e), field="page_token") from None
        iterator = self._client.list_workflows(
            query, page_size=page_size, next_page_token=token, rpc_timeout=_QUERY_TIMEOUT
        )
        try:
            await iterator.fetch_next_page()
        except RPCError as e:
            if "page" in e.message.lower() or "token" in e.message.lower():
                raise errors.Invalid("page_token is not a token this API returned", field="page_token") from e
            raise errors.from_rpc_error(e) from e
        executions = sorted(iterator.current_page or [], key=lambda w: w.start_time, reverse=True)
        items = [_summary_of(w) for w in executions]
        if to_approve:
            items = [i for i in items if actor.sub not in i.approvers]
        next_token = iterator.next_page_token
        return RequestPage(items=items, next_page_token=self._page_tokens.seal(scope, next_token) if next_token else None)

    # -- change ------------------------------------------------------------------

    async def approve(self, actor: Actor, request_id: str, comment: str | None) -> AccessRequestView:
        return await self._update(actor, request_id, AccessRequestWorkflow.approve, ApproveInput(actor=actor, comment=comment))

    async def deny(self, actor: Actor, request_id: str, reason: str) -> AccessRequestView:
        return await self._update(actor, request_id, AccessRequestWorkflow.deny, DenyInput(actor=actor, reason=reason))

    async def cancel(self, actor: Actor, request_id: str, reason: str | None) -> AccessRequestView:
        return await self._update(actor, request_id, AccessRequestWorkflow.cancel, CancelInput(actor=actor, reason=reason))

    async def revoke(self, actor: Actor, request_id: str, reason: str) -> AccessRequestView:
        return await self._update(actor, request_id, AccessRequestWorkflow.revoke, RevokeInput(actor=actor, reason=reason))

    async def extend(self, actor: Actor, request_id: str, duration_s: int, reason: str) -> AccessRequestView:
        update = ExtendInput(actor=actor, duration_s=duration_s, reason=reason)
        return await self._update(actor, request_id, AccessRequestWorkflow.extend, update)

    async def _update(self, actor: Actor, request_id: str, update: Any, arg: Any) -> AccessRequestView:
        handle = self._handle(request_id)
        # Who cannot see a request gets 404 whatever they try on it.
        view = await self.get(actor, request_id)
        if view.status.is_terminal:
            raise errors.Conflict(f"request is {view.status}")
        try:
            return await asyncio.wait_for(handle.execute_update(update, arg), _UPDATE_WAIT_S)
        except WorkflowUpdateFailedError as e:
            raise errors.from_update_failure(e) from e
        except RPCError as e:
            # The workflow finished between our read and the update.
            if e.status.name == "NOT_FOUND":
                raise errors.Conflict("request has already ended") from e
            raise errors.from_rpc_error(e) from e
        except (TimeoutError, RPCTimeoutOrCancelledError):
            raise errors.Unavailable(
                "no worker answered in time; the change may still be applied, check the request"
            ) from None

    # -- helpers -----------------------------------------------------------------

    def _handle(self, request_id: str) -> WorkflowHandle[Any, AccessRequestView]:
        if not _ID.match(request_id):
            raise errors.NotFound("no such request")
        return self._client.get_workflow_handle_for(AccessRequestWorkflow.run, workflow_id(request_id))

    async def _query(self, handle: WorkflowHandle[Any, AccessRequestView]) -> AccessRequestView:
        try:
            return await handle.query(AccessRequestWorkflow.get, rpc_timeout=_QUERY_TIMEOUT)
        except RPCError as e:
            raise errors.from_rpc_error(e) from e


def _summary(req: AccessRequestInput) -> str:
    text = f"{req.requester.sub}: {req.action} {req.resource} for {format_duration(req.duration_s)}"
    return f"{text} — {req.ticket}" if req.ticket else text


def _initial_view(req: AccessRequestInput) -> AccessRequestView:
    """What a new request looks like before a worker has run it."""
    auto = not req.policy.approvals_required
    status = (Status.SCHEDULED if req.start_at else Status.PROVISIONING) if auto else Status.PENDING
    return AccessRequestView(
        id=req.id,
        status=status,
        requester=req.requester.sub,
        resource=req.resource,
        action=req.action,
        duration_s=req.duration_s,
        reason=req.reason,
        ticket=req.ticket,
        start_at=req.start_at,
        approvals_required=req.policy.approvals_required,
        approver_groups=req.policy.approver_groups,
        created_at=req.created_at,
        approved_at=req.created_at if auto else None,
        policy_version=req.policy_version,
    )


def _quote(value: str, field: str) -> str:
    if not _SAFE_VALUE.match(value):
        raise errors.Invalid(f"{field}: may hold only letters, digits and _.:/@+-", field=field)
    return f"'{value}'"


def _scope_clause(actor: Actor) -> str:
    mine = f"JitRequester = {_quote(actor.sub, 'identity')}"
    groups = [g for g in actor.groups if _SAFE_VALUE.match(g)]
    if not groups:
        return mine
    listed = ", ".join(f"'{g}'" for g in groups)
    return f"({mine} OR JitApproverGroups IN ({listed}))"


def _summary_of(w: WorkflowExecution) -> RequestSummary:
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
    )
