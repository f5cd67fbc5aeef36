"""The policy engine's answers, as the API acts on them.

``evaluate`` decides a new request (the Cedar policies and the catalog, then this
server's own limits) without starting anything: ``POST /v1/requests/preview``
returns it as is, ``POST /v1/requests`` refuses with it or snapshots it into the
workflow input (``snapshot``). ``approver_reasons`` and ``check_revoke`` gate the
updates before they reach the workflow, whose validators still enforce the rules
that must hold whatever the policies say (never the requester, each approver
once, stage membership).

A refusal naming a request field is a 422 (the caller can fix it); one without a
field is a 403 with the policy's reason.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from api import errors
from api.schemas import CreateRequest, Preview
from core.durations import format_duration
from core.models import AccessRequestView, Actor, ResourcePolicy, StageSnapshot, Status
from core.settings import Settings
from policy import Decision, PolicyEngine, RequestDecision

MAX_START_AHEAD = timedelta(days=30)


def evaluate(
    engine: PolicyEngine, actor: Actor, body: CreateRequest, *, now: datetime, policy_now: datetime, settings: Settings
) -> RequestDecision:
    """The decision on ``body`` for ``actor``, capped by ``settings.max_duration_s``.

    ``policy_now`` is the instant the policies judge (hour, weekday); ``now`` the
    server's, for ``start_at``. They differ only in tests."""
    decision = engine.decide_request(
        actor,
        resource=body.resource,
        action=body.action,
        duration_s=body.duration,
        reason=body.reason,
        ticket=body.ticket,
        break_glass=body.break_glass,
        mfa=actor.mfa,
        now=policy_now,
    )
    ceiling = settings.max_duration_s
    if decision.max_duration_s > ceiling:
        decision = decision.model_copy(update={"max_duration_s": ceiling})
    if not decision.allowed:
        return decision

    def refuse(reason: str, field: str) -> RequestDecision:
        return decision.model_copy(
            update={"allowed": False, "reasons": [reason], "field": field, "auto_approve": False, "stages": []}
        )

    if body.duration > ceiling:
        return refuse(
            f"duration {format_duration(body.duration)} exceeds this server's maximum of {format_duration(ceiling)}",
            "duration",
        )
    if body.start_at is not None and body.start_at > now:
        if body.break_glass:
            return refuse("start_at: break-glass access starts at once; leave start_at out", "start_at")
        if body.start_at - now > MAX_START_AHEAD:
            return refuse("start_at may be at most 30 days ahead", "start_at")
    return decision


def preview(d: RequestDecision, body: CreateRequest) -> Preview:
    """What create would decide, as ``POST /v1/requests?dry_run=true`` shows it."""
    return Preview(
        allowed=d.allowed,
        reasons=d.reasons,
        field=d.field,
        auto_approve=d.allowed and d.auto_approve,
        break_glass=d.break_glass,
        stages=d.stages,
        approvals_required=sum(s.approvals for s in d.stages),
        max_duration_s=d.max_duration_s,
        duration_s=min(body.duration, d.max_duration_s),
        policy_version=d.policy_version,
    )


def raise_refusal(decision: Decision) -> None:
    """422 naming the field the policy blames, else 403 with its reasons."""
    if decision.allowed:
        return
    message = "; ".join(decision.reasons) or "not permitted"
    if decision.field:
        if not message.startswith(decision.field):
            message = f"{decision.field}: {message}"  # like every other 422: the field first
        raise errors.Invalid(message, field=decision.field)
    raise errors.Forbidden(message)


def snapshot(
    engine: PolicyEngine, decision: RequestDecision, body: CreateRequest, settings: Settings
) -> ResourcePolicy:
    """The rules a request keeps for its whole life, whatever the policies say later.

    ``approver_groups`` is the union of the stages' groups: it decides who may see the
    request and lists it in the search attributes (the stages decide who approves).
    A break-glass grant has no stages; its review is by ``review_groups``: the
    resource's first-stage approvers, or the admin groups if the resource has none.
    Those may see it, so they are its ``approver_groups``.
    """
    entry = engine.catalog.get(body.resource)
    assert entry is not None  # an allowed decision names a catalog resource
    catalog_stages = entry.rules(body.action).stages
    stages = [StageSnapshot(**s.model_dump()) for s in decision.stages]
    approver_groups = _unique(g for s in stages for g in s.groups)
    review_groups: list[str] = []
    if decision.break_glass:
        stages = []
        review_groups = list(catalog_stages[0].groups) if catalog_stages else list(settings.admin_groups)
        approver_groups = _unique([*(g for s in catalog_stages for g in s.groups), *review_groups])
    return ResourcePolicy(
        approvals_required=sum(s.approvals for s in stages),
        approver_groups=approver_groups,
        max_duration_s=decision.max_duration_s,
        approval_timeout_s=decision.approval_timeout_s,
        admin_groups=list(settings.admin_groups),
        provisioner=entry.provisioner,
        stages=stages,
        break_glass=decision.break_glass,
        review_groups=review_groups,
        reasons=list(decision.reasons),
        extension_approval=bool(stages) and entry.reapprove_extensions,
    )


def approver_reasons(engine: PolicyEngine, actor: Actor, view: AccessRequestView, *, policy_now: datetime) -> list[str]:
    """Whether ``actor`` may decide (approve or deny) the stage ``view`` waits on, or its
    pending extension: the policies that permit it, or a 403 with the reason (e.g. MFA
    for production).

    Left to the workflow (which answers 409, or 403 "your own request"): a request
    that is not pending, and the requester."""
    if actor.sub == view.requester:
        return []
    if view.status is Status.PENDING and view.stage is not None:
        stage, groups, duration_s, extension = view.stage, view.eligible_groups, view.duration_s, False
    elif view.status is Status.ACTIVE and view.pending_extension is not None:
        # An extension is decided by the first stage's approvers (the workflow checks which
        # groups exactly), under the same rules, with the extension in the context.
        stage = (view.approvals[0].stage or "") if view.approvals else ""
        groups, extension = view.approver_groups, True
        duration_s = view.pending_extension.duration_s or 0
    else:
        return []
    decision = engine.may_approve(
        actor,
        requester=view.requester,
        resource=view.resource,
        action=view.action,
        duration_s=duration_s,
        stage=stage,
        stage_groups=groups,  # the snapshot's, escalation included
        escalated=view.escalated,
        extension=extension,
        mfa=actor.mfa,
        now=policy_now,
        reason=view.reason,
        ticket=view.ticket,
        break_glass=view.break_glass,
    )
    if not decision.allowed:
        raise errors.Forbidden("; ".join(decision.reasons) or "not permitted")
    return decision.reasons


def check_revoke(engine: PolicyEngine, actor: Actor, view: AccessRequestView) -> list[str]:
    """The requester always may; anyone else needs the policies' ``revoke`` (returned)."""
    decision = engine.may_revoke(actor, requester=view.requester, resource=view.resource)
    if not decision.allowed:
        raise errors.Forbidden("; ".join(decision.reasons) or "not permitted")
    return [] if actor.sub == view.requester else list(decision.reasons)


def may_see(engine: PolicyEngine, actor: Actor, view: AccessRequestView) -> bool:
    """The requester, its approver groups (and whoever approved it), auditors per policy."""
    return (
        actor.sub == view.requester
        or actor.in_any(view.approver_groups)
        or actor.in_any(view.eligible_groups)  # escalated to groups outside the snapshot's union
        or any(a.approver == actor.sub for a in view.approvals)
        or engine.may_audit(actor).allowed
    )


def _unique(groups) -> list[str]:  # type: ignore[no-untyped-def]
    return list(dict.fromkeys(groups))
