"""Access requests over Temporal: decide, start, query, list and update the workflows.

Routes stay thin: they authenticate, then call one method here. The policy
decisions (api/decisions.py) are made here with the current engine
(api/policies.py), and object-level authorization too (who may see a request);
the workflow's update validators enforce what must hold whatever the policies
say.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.client import (
    Client,
    RPCTimeoutOrCancelledError,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.common import (
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api import decisions, errors, listing, new_requests, request_ids
from api.page_tokens import PageTokens
from api.policies import PolicyRuntime
from api.recent_grants import RecentGrants
from api.schemas import CreateRequest, Preview, RequestPage
from core.grant_store import open_grant_store
from core.grants import GrantRow, GrantStore
from core.models import (
    AccessRequestInput,
    AccessRequestView,
    AcknowledgeInput,
    Actor,
    ApproveInput,
    CancelInput,
    Decision,
    DenyInput,
    ExtendInput,
    ResourcePolicy,
    RevokeInput,
    Status,
)
from core.notify_config import NotificationConfig
from core.notify_models import NotificationPlan
from core.reconcile_schedule import reconcile_now
from core.settings import Settings
from core.temporal import (
    SA_REQUESTER,
    SA_RESOURCE,
    SA_STATUS,
    workflow_id,
)
from policy import PolicyEngine
from workflows.access_request import CANCELLED_BY, AccessRequestWorkflow

ORPHAN_REASON = "the request's workflow was ended outside jit-access (terminated in Temporal)"

_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")
_UPDATE_WAIT_S = 30.0


class RequestService:
    def __init__(
        self,
        client: Client,
        settings: Settings,
        policies: PolicyRuntime,
        page_tokens: PageTokens | None = None,
        grants: GrantStore | None = None,
        notifications: NotificationConfig | None = None,
        recent_grants: RecentGrants | None = None,
    ):
        self._client = client
        self._notifications = notifications
        self._recent_grants = recent_grants
        self._grants = grants or open_grant_store(settings)
        self._settings = settings
        self._policies = policies
        self._page_tokens = page_tokens or PageTokens()

    # -- decide and create -------------------------------------------------------

    def preview(self, actor: Actor, body: CreateRequest) -> Preview:
        """What create would decide, with nothing started."""
        d = decisions.evaluate(
            self._policies.engine(),
            actor,
            body,
            now=datetime.now(UTC),
            policy_now=self._policies.clock(),
            settings=self._settings,
        )
        return decisions.preview(d, body)

    async def create(
        self, actor: Actor, body: CreateRequest, idempotency_key: str | None
    ) -> tuple[AccessRequestView, bool]:
        """Start one workflow; returns (request, created). A repeated key returns the first."""
        request_id = new_requests.request_id_for(actor, idempotency_key)
        handle = self._client.get_workflow_handle_for(AccessRequestWorkflow.run, workflow_id(request_id))
        try:
            request_input = self._input_for(actor, body, request_id)
        except errors.ApiError as refusal:
            # A retry of a request filed before the policies (or the hour) changed is
            # answered with that request, not refused: the key made it once already.
            if idempotency_key is None:
                raise
            try:
                existing = await self._query(handle)
            except errors.NotFound:
                raise refusal from None
            return new_requests.same_request(existing, actor, body), False
        try:
            await self._client.start_workflow(
                AccessRequestWorkflow.run,
                request_input,
                id=handle.id,
                task_queue=self._settings.task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                search_attributes=new_requests.search_attributes(request_input),
                static_summary=new_requests.summary(request_input),
                static_details=f"Reason: {request_input.reason}\nPolicy: {request_input.policy_version}",
            )
        except WorkflowAlreadyStartedError:
            return new_requests.same_request(await self._started(handle), actor, body), False
        except RPCError as e:
            raise errors.while_starting(e) from e
        # Answer with the settled state: active for auto-approved, else pending.
        try:
            view = await asyncio.wait_for(
                handle.execute_update(AccessRequestWorkflow.settled), self._settings.settle_wait_s
            )
        except (TimeoutError, RPCError, RPCTimeoutOrCancelledError):
            view = new_requests.initial_view(request_input)
        return view, True

    def _input_for(self, actor: Actor, body: CreateRequest, request_id: str) -> AccessRequestInput:
        # One engine for the decision and the version it is recorded under.
        engine = self._policies.engine()
        now = datetime.now(UTC)
        decision = decisions.evaluate(
            engine, actor, body, now=now, policy_now=self._policies.clock(), settings=self._settings
        )
        decisions.raise_refusal(decision)
        start_at = body.start_at if body.start_at is not None and body.start_at > now else None  # past means now
        policy = decisions.snapshot(engine, decision, body, self._settings)
        return AccessRequestInput(
            id=request_id,
            requester=actor,
            resource=body.resource,
            action=body.action,
            duration_s=body.duration,
            reason=body.reason,
            ticket=body.ticket,
            start_at=start_at,
            created_at=now,
            policy=policy,
            policy_version=engine.version,
            notify=self._notify_plan(actor, body, policy, engine),
        )

    def _notify_plan(
        self, actor: Actor, body: CreateRequest, policy: ResourcePolicy, engine: PolicyEngine
    ) -> NotificationPlan | None:
        if self._notifications is None:
            return None
        entry = engine.catalog.get(body.resource)
        return self._notifications.plan(
            requester=actor.sub,
            resource=body.resource,
            environment=entry.environment if entry else None,
            policy=policy,
            public_url=self._settings.public_url,
        )

    # -- read --------------------------------------------------------------------

    async def resolve(self, actor: Actor, request_id: str) -> str:
        """The full id of ``request_id``, which may be a unique prefix of one (api/request_ids.py)."""
        # The caller's scope, as the request list has it: asked only for a prefix.
        return await request_ids.resolve(
            self._client,
            request_id,
            lambda: listing.base_clauses(actor, sees_everything=self.sees_everything(actor)),
        )

    async def get(self, actor: Actor, request_id: str) -> AccessRequestView:
        request_id = await self.resolve(actor, request_id)
        view = await self._query(self._handle(request_id))
        if not decisions.may_see(self._policies.engine(), actor, view):
            raise errors.NotFound("no such request")  # not 403: do not confirm it exists
        return view

    async def live_grant_of(self, actor: Actor, request_id: str) -> GrantRow | None:
        """The caller's own grant, when the request is plainly active: else None (ask ``get`` why).

        Reads what Temporal keeps for the workflow (running, and ``JitStatus`` =
        active, which the workflow sets only once the grant is provisioned and in
        the audit log) and the grant store: no query, so it never waits behind a
        workflow task the worker is running for the request (a notification's
        completion, say).
        """
        request_id = await self.resolve(actor, request_id)
        grant = self._grants.lookup(request_id)
        if grant is None or grant.requester != actor.sub or not grant.is_live(datetime.now(UTC)):
            return None
        try:
            described = await self._handle(request_id).describe(rpc_timeout=timedelta(seconds=5))
        except (RPCError, RPCTimeoutOrCancelledError):
            return None
        attributes = described.typed_search_attributes
        if (
            described.status is not WorkflowExecutionStatus.RUNNING
            or attributes.get(SA_STATUS) != Status.ACTIVE.value
            or attributes.get(SA_REQUESTER) != actor.sub
        ):
            return None
        return grant

    def sees_everything(self, actor: Actor) -> bool:
        return self._policies.engine().may_audit(actor).allowed

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
        clauses = listing.base_clauses(actor, sees_everything=self.sees_everything(actor))
        if mine:
            clauses.append(listing.equals(SA_REQUESTER, actor.sub, "mine"))
        if to_approve:
            extra = listing.to_approve_clauses(actor)
            if extra is None:
                return RequestPage(items=[])
            clauses += extra
        if status is not None:
            clauses.append(listing.equals(SA_STATUS, status.value, "status"))
        if requester:
            clauses.append(listing.equals(SA_REQUESTER, requester, "requester"))
        if resource:
            clauses.append(listing.equals(SA_RESOURCE, resource, "resource"))
        return await listing.fetch_page(
            self._client,
            self._page_tokens,
            actor,
            clauses,
            page_size=page_size,
            page_token=page_token,
            # Approved in an earlier stage: not theirs to approve again.
            # (An extension is decided again, by the same approvers.)
            keep=(lambda i: i.extension_pending or actor.sub not in i.approvers) if to_approve else (lambda _: True),
        )

    async def reviews(self, actor: Actor, *, page_size: int, page_token: str | None) -> RequestPage:
        """Break-glass grants whose review is pending, in the caller's scope (review groups see theirs)."""
        clauses = listing.base_clauses(actor, sees_everything=self.sees_everything(actor)) + listing.REVIEW_PENDING
        return await listing.fetch_page(
            self._client, self._page_tokens, actor, clauses, page_size=page_size, page_token=page_token
        )

    # -- change ------------------------------------------------------------------

    async def approve(self, actor: Actor, request_id: str, comment: str | None) -> AccessRequestView:
        request_id = await self.resolve(actor, request_id)
        view = await self._changeable(actor, request_id)
        permitted_by = decisions.approver_reasons(
            self._policies.engine(), actor, view, policy_now=self._policies.clock()
        )
        update = ApproveInput(actor=actor, comment=comment, permitted_by=permitted_by)
        return await self._send(request_id, AccessRequestWorkflow.approve, update)

    async def deny(self, actor: Actor, request_id: str, reason: str) -> AccessRequestView:
        request_id = await self.resolve(actor, request_id)
        # A deny decides the stage as an approval would: the same policies apply (MFA, ...).
        view = await self._changeable(actor, request_id)
        decisions.approver_reasons(self._policies.engine(), actor, view, policy_now=self._policies.clock())
        return await self._send(request_id, AccessRequestWorkflow.deny, DenyInput(actor=actor, reason=reason))

    async def cancel(self, actor: Actor, request_id: str, reason: str | None) -> AccessRequestView:
        request_id = await self.resolve(actor, request_id)
        await self._changeable(actor, request_id)
        return await self._send(request_id, AccessRequestWorkflow.cancel, CancelInput(actor=actor, reason=reason))

    async def revoke(self, actor: Actor, request_id: str, reason: str) -> AccessRequestView:
        request_id = await self.resolve(actor, request_id)
        view = await self._changeable(actor, request_id, orphan_ok=True)
        permitted_by = decisions.check_revoke(self._policies.engine(), actor, view)
        try:
            if not view.orphaned:
                update = RevokeInput(actor=actor, reason=reason, permitted_by=permitted_by)
                try:
                    return await self._send(request_id, AccessRequestWorkflow.revoke, update)
                except errors.Conflict:
                    # Ended between our read and the update: by its own end, or from outside.
                    if not (await self.get(actor, request_id)).orphaned:
                        raise
            # Its workflow was ended outside jit-access: revoke what it left, as the reconciler does.
            await reconcile_now(self._client, self._settings, [request_id])
            return await self.get(actor, request_id)
        finally:
            if self._recent_grants is not None:  # introspection here reads the tombstone from now on
                self._recent_grants.forget(request_id)

    async def extend(self, actor: Actor, request_id: str, duration_s: int, reason: str) -> AccessRequestView:
        request_id = await self.resolve(actor, request_id)
        await self._changeable(actor, request_id)
        update = ExtendInput(actor=actor, duration_s=duration_s, reason=reason)
        return await self._send(request_id, AccessRequestWorkflow.extend, update)

    async def acknowledge(self, actor: Actor, request_id: str, comment: str | None) -> AccessRequestView:
        """Close the review of a break-glass grant: also once the grant has ended
        (the workflow stays open until its review is done)."""
        request_id = await self.resolve(actor, request_id)
        view = await self.get(actor, request_id)
        if view.status.is_terminal and not view.review_pending:
            raise errors.Conflict(f"request is {view.status}" + ("" if view.break_glass else ", and not break-glass"))
        update = AcknowledgeInput(actor=actor, comment=comment)
        return await self._send(request_id, AccessRequestWorkflow.acknowledge, update)

    async def _changeable(self, actor: Actor, request_id: str, *, orphan_ok: bool = False) -> AccessRequestView:
        # Who cannot see a request gets 404 whatever they try on it.
        view = await self.get(actor, request_id)
        if view.status.is_terminal:
            raise errors.Conflict(f"request is {view.status}")
        if view.orphaned and not orphan_ok:
            raise errors.Conflict("the request's workflow was ended outside jit-access; only revoke is possible")
        return view

    async def _send(self, request_id: str, update: Any, arg: Any) -> AccessRequestView:
        handle = self._handle(request_id)
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

    async def _reachable(self, handle: WorkflowHandle[Any, Any]) -> bool:
        """Whether Temporal itself answers: tells a workflow that cannot answer from an outage."""
        try:
            await handle.describe(rpc_timeout=listing.QUERY_TIMEOUT)
        except (RPCError, RPCTimeoutOrCancelledError):
            return False
        return True

    async def _started(self, handle: WorkflowHandle[Any, AccessRequestView]) -> AccessRequestView:
        """The request an Idempotency-Key started: Temporal just said it exists, so a "not
        found" now is Temporal still recovering (a restart), never "no such request"."""
        try:
            return await self._query(handle)
        except errors.NotFound as e:
            raise errors.while_starting(e.__cause__) from e

    async def _query(self, handle: WorkflowHandle[Any, AccessRequestView]) -> AccessRequestView:
        try:
            view = await handle.query(AccessRequestWorkflow.get, rpc_timeout=listing.QUERY_TIMEOUT)
            if view.status.is_terminal:
                return view
            # Not ended by its own workflow: is that workflow still running? A terminated
            # one answers queries with the state it was cut off in.
            running = (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
        except WorkflowQueryFailedError as e:
            raise errors.query_failed() from e
        except RPCError as e:
            if e.status in (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED) and await self._reachable(handle):
                # Temporal answers, the workflow does not: its task is failing on the worker
                # (or no worker runs it), so the query waited out its time.
                raise errors.query_failed() from e
            raise errors.from_rpc_error(e) from e
        return view if running else _orphaned(view, self._grants.lookup(view.id))


def _orphaned(view: AccessRequestView, grant: GrantRow | None) -> AccessRequestView:
    """A request whose workflow was ended outside jit-access, as it now stands.

    Access it was granted stays ``active`` (with an alert) until the reconciler,
    or a revoke, has tombstoned it; then it reads ``revoked``. A request that
    never got access reads ``cancelled``."""
    update: dict[str, Any] = {"orphaned": True}
    if view.activated_at is None and view.status is not Status.PROVISIONING:
        update["status"] = Status.CANCELLED
        update["cancellation"] = Decision(actor=CANCELLED_BY, at=view.created_at, reason=ORPHAN_REASON)
    elif grant is not None and grant.revoked_at is not None:
        update["status"] = Status.REVOKED
        update["ended_at"] = grant.revoked_at
        update["revocation"] = view.revocation or Decision(
            actor="reconciler", at=grant.revoked_at, reason=ORPHAN_REASON
        )
    else:
        update["alert"] = "the request's workflow was ended outside jit-access; its access is being revoked"
    return view.model_copy(update=update)
