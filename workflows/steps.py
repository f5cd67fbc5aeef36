"""The activity calls of the lifecycle, with their timeouts and retry policies.

Kept apart from the state machine in ``access_request.py`` so that file reads
as the lifecycle and this one as "what it costs to touch the outside world".
Deterministic workflow code: runs inside the workflow sandbox.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.clock import read_clock
    from activities.grants import ExtendGrantInput, GrantActivities, IssueGrantInput, RevokeGrantInput
    from activities.provisioners.base import GrantOutcome, GrantSpec, RevokeOutcome
    from activities.provisioning import DeprovisionInput, ExtendProvisionInput, ProvisioningActivities
    from core.durations import format_duration
    from core.models import AccessRequestInput

STEP_TIMEOUT = timedelta(seconds=15)
# Provisioning gives up (and rolls back) after this; the request ends failed.
ISSUE_TIMEOUT = timedelta(minutes=2)
# Database work may wait on locks and on sessions being terminated.
PROVISION_TIMEOUT = timedelta(seconds=90)
PROVISION_HEARTBEAT = timedelta(seconds=20)
# Revocation never gives up: access must end. Backoff is capped so that a
# recovered target is noticed quickly.
REVOKE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=10))
# Deprovisioning runs in rounds; each failed round raises the request's alert.
ROUND_PAUSE = timedelta(seconds=30)
DEPROVISION_ROUND = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30), maximum_attempts=10
)
# Grant-store writes (record, extend, tombstone) are local activities: the store
# is a SQLite file beside the worker, a write takes a millisecond, and a round
# trip through the server for each roughly doubled the work at every expiry
# (docs/benchmarks.md, "Burst"). Histories from before replay as they were:
# the workflow asks once, at its start (``workflow.patched`` is memoized per run).
GRANT_STORE_PATCH = "grant-store-local-v1"
# How a step's failure reaches the workflow: a regular activity's wrapped in
# ActivityError, a local activity's as the activity's own ApplicationError.
StepFailed = (ActivityError, ApplicationError)


async def _grant_store(local: bool, method: Callable[..., Any], arg: Any, summary: str, **options: Any) -> Any:
    """One grant-store activity: local when ``local``, else a regular one (older histories)."""
    run = workflow.execute_local_activity_method if local else workflow.execute_activity_method
    return await run(method, arg, start_to_close_timeout=STEP_TIMEOUT, summary=summary, **options)


async def time_left(until: datetime, local: bool) -> timedelta:
    """Runs started before ``waits.HISTORY_TIMERS_PATCH``: replaced by :func:`grant_timer`.

    How long a timer must run to end at ``until``: workflow time, shortened by the wall clock.

    ``workflow.now()`` is when this workflow task began; local activities that
    ran in it since took real time it does not include, and a timer computed
    from it alone would fire that much late (activities/clock.py). The wall
    clock may only shorten the wait: a time-skipping test server runs ahead of
    it, and a worker whose clock runs ahead only makes the timer end early, so
    the caller's loop waits the rest on workflow time.
    """
    left = until - workflow.now()
    if left <= timedelta(0) or not local:  # older histories read no clock
        return left
    wall: datetime = await workflow.execute_local_activity(
        read_clock, start_to_close_timeout=STEP_TIMEOUT, summary="clock"
    )
    return until - wall if timedelta(0) < until - wall < left else left


# The shortest timer the lifecycle sets: a wait whose end has already passed
# still fires (at once) rather than being skipped, so whether a timer is set
# never depends on the clock (waits.py).
MIN_TIMER = timedelta(milliseconds=1)


async def grant_timer(until: datetime) -> timedelta | None:
    """The grant timer's length to end at ``until``, or None once ``until`` has passed.

    Always reads the wall clock first (a local activity, recorded in history),
    so the sequence of commands is the same however a replay reaches here, and
    only that recorded reading decides None. ``workflow.now()`` is when this
    workflow task began, earlier than the reading by the local activities that
    ran in the task since, or (in a query's replay) by much more: the reading
    shortens the timer to what is left. ``workflow.now()`` shortens it in turn
    where it runs ahead of the wall clock (the time-skipping test server). A
    worker whose clock runs ahead ends grants early by as much, never late.
    """
    wall: datetime = await workflow.execute_local_activity(
        read_clock, start_to_close_timeout=STEP_TIMEOUT, summary="clock"
    )
    if until <= wall:
        return None
    return max(min(until - wall, until - workflow.now()), MIN_TIMER)


def grant_spec(req: AccessRequestInput, activated_at: datetime, expires_at: datetime) -> GrantSpec:
    return GrantSpec(
        request_id=req.id,
        requester=req.requester.sub,
        resource=req.resource,
        action=req.action,
        activated_at=activated_at,
        expires_at=expires_at,
        settings=req.policy.provisioner,
    )


async def issue(
    spec: GrantSpec, *, local: bool, requested_at: datetime | None = None, approved_at: datetime | None = None
) -> GrantOutcome | None:
    """Record the grant, then make it real in the target system (if the catalog names one).

    ``requested_at``/``approved_at`` only feed the time-to-approve metric.
    """
    await _grant_store(
        local,
        GrantActivities.issue_grant,
        IssueGrantInput(
            request_id=spec.request_id,
            requester=spec.requester,
            resource=spec.resource,
            action=spec.action,
            activated_at=spec.activated_at,
            expires_at=spec.expires_at,
            requested_at=requested_at,
            approved_at=approved_at,
        ),
        f"record {spec.action} on {spec.resource}",
        schedule_to_close_timeout=ISSUE_TIMEOUT,
    )
    if spec.provisioner == "none":
        return None
    return await workflow.execute_activity_method(
        ProvisioningActivities.provision,
        spec,
        start_to_close_timeout=PROVISION_TIMEOUT,
        heartbeat_timeout=PROVISION_HEARTBEAT,
        schedule_to_close_timeout=ISSUE_TIMEOUT + PROVISION_TIMEOUT,
        summary=f"provision {spec.provisioner}: {spec.action} on {spec.resource}",
    )


async def extend(
    spec: GrantSpec,
    expires_at: datetime,
    added_s: int,
    *,
    local: bool,
    still_live: Callable[[], bool] = lambda: True,
) -> bool:
    """Target first, then the store: the store never promises more than the target has.

    False (the store untouched) when ``still_live`` says the grant ended while
    the target was being extended: the store never runs ahead of the workflow.
    """
    if spec.provisioner != "none":
        await workflow.execute_activity_method(
            ProvisioningActivities.extend_provision,
            ExtendProvisionInput(spec=spec, expires_at=expires_at),
            start_to_close_timeout=PROVISION_TIMEOUT,
            heartbeat_timeout=PROVISION_HEARTBEAT,
            schedule_to_close_timeout=ISSUE_TIMEOUT,
            summary=f"extend {spec.provisioner} by {format_duration(added_s)}",
        )
    if not still_live():
        return False
    await _grant_store(
        local,
        GrantActivities.extend_grant,
        ExtendGrantInput(request_id=spec.request_id, expires_at=expires_at),
        f"extend by {format_duration(added_s)}",
        schedule_to_close_timeout=ISSUE_TIMEOUT,
    )
    return True


async def revoke(
    request_id: str, spec: GrantSpec | None, reason: str, on_alert: Callable[[str | None], None], *, local: bool
) -> RevokeOutcome | None:
    """Tombstone the grant (tokens die at once), then take the access back and verify.

    Never gives up. Each failed round of deprovisioning raises the alert that
    the request shows until a round succeeds.
    """
    await _grant_store(
        local,
        GrantActivities.revoke_grant,
        RevokeGrantInput(request_id=request_id, reason=reason),
        f"revoke: {reason}"[:100],
        retry_policy=REVOKE_RETRY,
    )
    if spec is None or spec.provisioner == "none":
        return None
    while True:
        try:
            outcome = await workflow.execute_activity_method(
                ProvisioningActivities.deprovision,
                DeprovisionInput(spec=spec, reason=reason),
                start_to_close_timeout=PROVISION_TIMEOUT,
                heartbeat_timeout=PROVISION_HEARTBEAT,
                retry_policy=DEPROVISION_ROUND,
                summary=f"deprovision {spec.provisioner} and verify",
            )
        except ActivityError as e:
            on_alert(f"revocation keeps failing, still retrying: {e.cause or e}"[:300])
            # A round can end at once (a non-retryable error): pause so that a
            # broken target costs a few events an hour, not a hot loop.
            await workflow.sleep(ROUND_PAUSE, summary="revocation retry pause")
            continue
        on_alert(None)
        return outcome
