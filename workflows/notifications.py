"""The workflow's side of notifications: which event goes to whom, sent without holding access up.

Each event goes to all its routes in the request's :class:`NotificationPlan`
(decided at filing, in the workflow input), after the step it tells of. Routes
the plan marks ``inline`` (console, webhook) get attempt 1 as a local activity,
inside the workflow task: no round trip to Temporal when it succeeds, at most
``inline_ms`` of waiting when it does not. Everything else, and what failed
inline, is one ``deliver`` activity per event, started and never awaited by the
lifecycle: a slow or broken channel delays, fails or blocks nothing. One
activity per event, not per route: each costs the history a few events and the
worker a workflow task, and the activity remembers which routes are done across
its retries. Deliveries retry with backoff, a bounded number of times; the
workflow waits for the stragglers only once the request has ended
(``drained``), so that the "expired" message is not cut off.

Approvers' messages that a channel can update (Slack) are remembered, and once
the request or extension is decided each is updated in place with who decided
(``EventKind.DECIDED``).

Deterministic: whether a delivery is started, and how, depends on the input and
the events in history only (an inline attempt's outcome is in its marker);
``NOTIFICATIONS_PATCH`` keeps runs from before it (which carry no plan anyway)
as they were, ``INLINE_PATCH`` those whose every delivery was an activity.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.notify import NotifyActivities
    from core import provisioners
    from core.models import AccessRequestInput
    from core.notify_models import (
        Dispatch,
        Dispatched,
        EventKind,
        MessageRef,
        NotificationEvent,
        NotificationPlan,
        Route,
    )

NOTIFICATIONS_PATCH = "notifications-v1"
# Inline first attempts (local activities) for the routes whose plan allows them.
INLINE_PATCH = "notifications-inline-v1"
# One attempt may take this long (a channel's own timeout is shorter).
ATTEMPT_TIMEOUT = timedelta(seconds=30)


def _retry(max_attempts: int) -> RetryPolicy:
    return RetryPolicy(
        initial_interval=timedelta(seconds=2),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=60),
        maximum_attempts=max_attempts,
    )


class Notifier:
    def __init__(self, req: AccessRequestInput) -> None:
        self._req = req
        plan = req.notify
        # Asked only when there is a plan: histories without one never saw the marker.
        self.plan: NotificationPlan | None = plan if plan and workflow.patched(NOTIFICATIONS_PATCH) else None
        # Asked only when the plan allows inline routes, for the same reason.
        self._inline = bool(
            self.plan
            and self.plan.inline_ms > 0
            and any(r.inline for r in self.plan.routes)
            and workflow.patched(INLINE_PATCH)
        )
        self._seq = 0
        self.announced: set[int] = set()  # approval stages whose approvers were told
        self._tasks: list[asyncio.Task[Any]] = []
        # Approvers' messages not yet updated with the decision: their routes, and the dispatch.
        self._open: list[tuple[list[Route], asyncio.Task[Dispatched | None]]] = []

    @property
    def on(self) -> bool:
        return self.plan is not None and bool(self.plan.routes)

    def send(self, kind: EventKind, audiences: list[str], *, track: bool = False, **fields: Any) -> None:
        """Start one delivery of the event to every route of ``audiences``; ``track``: update it at the decision."""
        if not self.on:
            return
        assert self.plan is not None
        routes = self.plan.routes_for(audiences, kind.value)
        if not routes:
            return
        event = self._event(kind, fields)
        inline = [r for r in routes if self._inline and r.inline]
        if inline:
            self._spawn(self._inline_first(Dispatch(event=event, routes=inline, max_attempts=self.plan.max_attempts)))
        durable = [r for r in routes if not (self._inline and r.inline)]
        if durable:
            task = self._dispatch(Dispatch(event=event, routes=durable, max_attempts=self.plan.max_attempts))
            if track:  # only these can be updated in place (Slack): inline channels post no message to update
                self._open.append((durable, task))

    def decided(self, **fields: Any) -> None:
        """Update every open approvers' message: the request (or extension) is decided."""
        if not self.on:
            return
        opened, self._open = self._open, []
        if opened:
            event = self._event(EventKind.DECIDED, fields)
            self._spawn(self._update_all(opened, event))

    def spawn(self, coro: Any) -> None:
        """Run ``coro`` beside the lifecycle (the expiry reminder); awaited by :meth:`drained`."""
        self._spawn(coro)

    async def drained(self) -> None:
        """Every delivery done or given up (each is bounded): then the workflow may end."""
        while self._tasks:
            tasks, self._tasks = self._tasks, []
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- inside ------------------------------------------------------------------

    def _event(self, kind: EventKind, fields: dict[str, Any]) -> NotificationEvent:
        assert self.plan is not None
        self._seq += 1
        req = self._req
        url = f"{self.plan.public_url.rstrip('/')}/ui/requests/{req.id}" if self.plan.public_url else None
        base: dict[str, Any] = dict(
            id=f"{req.id}:{self._seq}:{kind.value}",
            kind=kind,
            at=workflow.now(),
            request_id=req.id,
            requester=req.requester.sub,
            resource=req.resource,
            action=req.action,
            duration_s=req.duration_s,
            reason=req.reason,
            ticket=req.ticket,
            environment=self.plan.environment,
            policy_reasons=req.policy.reasons,
            provisioner=provisioners.type_of(req.policy.provisioner),
            database=req.policy.provisioner.get("database"),
            url=url,
        )
        base.update(fields)
        return NotificationEvent(**base)

    def _dispatch(self, dispatch: Dispatch) -> asyncio.Task[Dispatched | None]:
        assert self.plan is not None
        handle = workflow.start_activity_method(
            NotifyActivities.deliver,
            dispatch,
            start_to_close_timeout=ATTEMPT_TIMEOUT,
            schedule_to_close_timeout=timedelta(seconds=self.plan.give_up_after_s),
            retry_policy=_retry(dispatch.max_attempts - dispatch.attempts_made),
            summary=_summary(dispatch),
        )
        task = asyncio.ensure_future(_quietly(handle))
        self._tasks.append(task)
        return task

    async def _inline_first(self, dispatch: Dispatch) -> None:
        """Attempt 1 inside the workflow task (no round trip to Temporal when it succeeds);
        what it did not deliver goes on as a retried activity with the attempts left."""
        assert self.plan is not None
        try:
            done: Dispatched = await workflow.execute_local_activity_method(
                NotifyActivities.deliver,
                dispatch.model_copy(update={"inline_ms": self.plan.inline_ms}),
                # Each send stops itself at inline_ms; this only backs that up.
                start_to_close_timeout=timedelta(milliseconds=2 * self.plan.inline_ms),
                retry_policy=RetryPolicy(maximum_attempts=1),
                summary=_summary(dispatch),
            )
            tried, untried = done.failed, done.held_back
        except ActivityError:
            tried, untried = list(range(len(dispatch.routes))), []
        for indexes, made in ((tried, 1), (untried, 0)):
            if indexes and made < dispatch.max_attempts:
                routes = [dispatch.routes[i] for i in indexes]
                self._dispatch(dispatch.model_copy(update={"routes": routes, "attempts_made": made}))

    async def _update_all(
        self, opened: list[tuple[list[Route], asyncio.Task[Dispatched | None]]], event: NotificationEvent
    ) -> None:
        assert self.plan is not None
        routes: list[Route] = []
        refs: list[MessageRef | None] = []
        for sent_to, task in opened:
            done = await task
            for route, ref in zip(sent_to, done.refs if done else [], strict=False):
                if ref is not None:  # posted, and the channel can update it
                    routes.append(route)
                    refs.append(ref)
        if routes:
            self._dispatch(Dispatch(event=event, routes=routes, refs=refs, max_attempts=self.plan.max_attempts))

    def _spawn(self, coro: Any) -> None:
        self._tasks.append(asyncio.ensure_future(coro))


def _summary(dispatch: Dispatch) -> str:
    """What Temporal UI shows for the delivery: ``notify db-owners via slack: filed``."""
    who = ", ".join(dict.fromkeys(r.label for r in dispatch.routes))
    via = ", ".join(dict.fromkeys(r.channel for r in dispatch.routes))
    return f"notify {who} via {via}: {dispatch.event.kind.value}"[:100]


async def _quietly(handle: Any) -> Dispatched | None:
    """A delivery's result, None once it gave up: a notification never fails the request."""
    try:
        return await handle
    except ActivityError:
        return None


def reminder_at(expires_at: datetime, activated_at: datetime, plan: NotificationPlan) -> datetime | None:
    """When to remind the requester of ``expires_at``; None for a grant too short to need it."""
    if expires_at - activated_at < timedelta(seconds=plan.reminder_min_grant_s):
        return None
    return expires_at - timedelta(seconds=plan.reminder_lead_s)
