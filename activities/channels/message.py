"""What a notification says, before any channel formats it: a title, facts and commands.

Every channel renders from this, so the wording is the same in the console, in
Slack and in an email. User strings (reason, ticket, comments, names) pass
through :func:`clean` (no control characters) here; each channel escapes them
for its own markup (Slack mrkdwn, HTML). No secret is ever part of a message:
an event carries none (core/notify_models.py).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from core import provisioners
from core.durations import format_duration
from core.notify_models import EventKind, NotificationEvent

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def clean(text: str | None) -> str:
    """A user string fit for any message: control characters dropped, line breaks kept."""
    return _CONTROL.sub("", text or "").replace("\r", "")


@dataclass
class Message:
    title: str
    facts: list[tuple[str, str]] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    url: str | None = None
    # Approvers' messages carry Approve / Deny buttons where the channel has them.
    decidable: bool = False


def _id(event: NotificationEvent) -> str:
    return event.request_id[:8]


def _who(event: NotificationEvent) -> str:
    return clean(event.requester)


def _what(event: NotificationEvent) -> str:
    return f"{event.action} on {clean(event.resource)}"


_TITLES = {
    EventKind.FILED: "{who} asks for {what} for {duration}",
    EventKind.ESCALATED: "Escalated to you: {who} asks for {what} for {duration}",
    EventKind.EXTENSION_PENDING: "{who} asks to extend {what} by {extension}",
    EventKind.APPROVED: "Approved: {what}",
    EventKind.DENIED: "Denied: {what}",
    EventKind.TIMED_OUT: "Timed out, nobody decided: {what}",
    EventKind.FAILED: "Failed: {what}",
    EventKind.ACTIVE: "Active: {what} until {expires}",
    EventKind.EXPIRING: "Expires at {expires}: {what}",
    EventKind.EXTENDED: "Extended by {extension}: {what} until {expires}",
    EventKind.EXTENSION_DENIED: "Extension denied: {what}",
    EventKind.EXPIRED: "Expired: {what}",
    EventKind.REVOKED: "Revoked: {what}",
    EventKind.BREAK_GLASS: "Break-glass: {who} took {what} for {duration}",
    EventKind.ALERT_RAISED: "Alert: request {id} ({what} for {who})",
    EventKind.ALERT_CLEARED: "Alert cleared: request {id} ({what} for {who})",
    EventKind.DECIDED: "{status}: {who} asked for {what} for {duration}",
}


def build(event: NotificationEvent) -> Message:
    title = _TITLES[event.kind].format(
        who=_who(event),
        what=_what(event),
        duration=format_duration(event.duration_s),
        extension=format_duration(event.extension_s or 0),
        expires=f"{event.expires_at:%H:%M} UTC" if event.expires_at else "?",
        id=_id(event),
        status=event.status.replace("_", " ").capitalize(),
    )
    msg = Message(title=title, url=event.url)
    facts = msg.facts
    facts.append(("Request", event.request_id))
    facts.append(("Requester", _who(event)))
    facts.append(("Access", _what(event)))
    if event.environment:
        facts.append(("Environment", clean(event.environment)))
    facts.append(("Duration", format_duration(event.duration_s)))
    facts.append(("Reason", clean(event.reason)))
    if event.ticket:
        facts.append(("Ticket", clean(event.ticket)))
    if event.policy_reasons:
        facts.append(("Policy", ", ".join(clean(r) for r in event.policy_reasons)))
    if event.groups:
        facts.append(("Approvers", f"{event.approvals_needed} from {', '.join(clean(g) for g in event.groups)}"))
    if event.approvals:
        facts.append(("Approved by", ", ".join(clean(a) for a in event.approvals)))
    if event.actor and event.kind is not EventKind.FILED:
        facts.append(("By", clean(event.actor)))
    if event.detail:
        facts.append(("Why" if event.kind is not EventKind.ALERT_RAISED else "Alert", clean(event.detail)))
    if event.expires_at:
        facts.append(("Expires", f"{event.expires_at:%Y-%m-%d %H:%M:%S} UTC"))
    msg.commands = _commands(event)
    msg.decidable = event.kind in (EventKind.FILED, EventKind.ESCALATED, EventKind.EXTENSION_PENDING)
    return msg


def _commands(event: NotificationEvent) -> list[str]:
    rid = _id(event)
    kind = event.kind
    if kind in (EventKind.FILED, EventKind.ESCALATED, EventKind.EXTENSION_PENDING):
        return [f"jit approve {rid}", f"jit deny {rid} --reason {shlex.quote('why not')}"]
    if kind in (EventKind.ACTIVE, EventKind.EXTENDED):
        if event.provisioner == provisioners.POSTGRES:
            role = f" (role {clean(event.principal)})" if event.principal else ""
            return [f"jit token {rid} --psql{role}"]
        return [f"jit token {rid}"]
    if kind is EventKind.EXPIRING:
        return [
            f"jit extend {rid} --for 15m --reason {shlex.quote('still needed')}",
            f"jit revoke {rid} --reason done",
        ]
    if kind is EventKind.BREAK_GLASS:
        return [f"jit acknowledge {rid}"]
    if kind in (EventKind.ALERT_RAISED, EventKind.ALERT_CLEARED):
        return [f"jit show {rid}"]
    return []


def as_text(msg: Message) -> str:
    """Plain text: the console and the text part of an email."""
    lines = [msg.title, ""]
    width = max((len(label) for label, _ in msg.facts), default=0)
    lines += [f"{label + ':':<{width + 1}} {value}" for label, value in msg.facts]
    if msg.commands:
        lines += ["", *(f"  $ {c}" for c in msg.commands)]
    if msg.url:
        lines += ["", msg.url]
    return "\n".join(lines)
