"""A request's history as the detail page lists it: what happened, when, by whom, in order."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from core.catalog import LEGACY_STAGE
from core.durations import format_duration
from core.models import AccessRequestView, Status


@dataclass(frozen=True)
class Event:
    at: datetime
    what: str
    who: str = ""
    note: str = ""


def timeline(view: AccessRequestView) -> list[Event]:
    events = [Event(view.created_at, "Filed", view.requester, view.reason)]
    for a in view.approvals:
        # The one stage of the short form (approvals_required) goes without saying.
        stage = f" (stage {a.stage})" if a.stage and a.stage != LEGACY_STAGE else ""
        events.append(Event(a.at, f"Approved{stage}", a.approver, a.comment or ""))
    if view.approved_at and not view.approvals and view.status is not Status.PENDING:
        events.append(Event(view.approved_at, "Granted at once by policy", note="; ".join(view.policy_reasons)))
    if view.activated_at:
        until = f"until {view.expires_at:%Y-%m-%d %H:%M UTC}" if view.expires_at else ""
        events.append(Event(view.activated_at, "Access granted", note=until))
    for e in view.extensions:
        more = f"+{format_duration(e.duration_s)}" if e.duration_s else ""
        events.append(Event(e.at, f"Extended {more}".strip(), e.actor, e.reason or ""))
    if view.pending_extension:
        p = view.pending_extension
        more = f"+{format_duration(p.duration_s)}" if p.duration_s else ""
        events.append(
            Event(p.at, f"Extension asked {more}, waiting for approval".replace("  ", " "), p.actor, p.reason or "")
        )
    for label, decision in (("Denied", view.denial), ("Cancelled", view.cancellation), ("Revoked", view.revocation)):
        if decision:
            events.append(Event(decision.at, label, decision.actor, decision.reason or ""))
    if view.revocation_verified_at:
        events.append(Event(view.revocation_verified_at, "Revocation verified: the access is gone"))
    if view.status is Status.EXPIRED and view.ended_at:
        events.append(Event(view.ended_at, "Expired"))
    if view.status is Status.TIMED_OUT and view.ended_at:
        events.append(Event(view.ended_at, "Timed out: nobody decided in time"))
    if view.failure and view.ended_at:
        events.append(Event(view.ended_at, "Failed", note=view.failure))
    if view.review:
        events.append(
            Event(view.review.at, "Break-glass review acknowledged", view.review.actor, view.review.reason or "")
        )
    return sorted(events, key=lambda e: e.at)
