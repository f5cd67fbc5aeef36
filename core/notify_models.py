"""Notifications as the workflow sends them: one module the API, workflow and channels import.

The API decides *where* a request's notifications go when it is filed (the
:class:`NotificationPlan` in the workflow input, from config/notifications.yaml,
core/notify_config.py), as it snapshots the policy: a later edit of the file
changes new requests only, and a replay never depends on it. The workflow
decides *when* (workflows/notifications.py): one ``deliver`` activity per
route and event (activities/notify.py), which renders and sends through the
route's channel (activities/channels/).

Everything here is stored in Temporal history: routes name channels and
addresses, never a token, password or DSN (channels take their secrets from
the environment, by the variable's name in the configuration file).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

# The version of the event schema webhooks receive (docs/notifications.md).
EVENT_SCHEMA_VERSION = 1


class EventKind(StrEnum):
    # To the approvers of the stage waiting (then the escalation groups, then
    # an extension's approvers).
    FILED = "filed"
    ESCALATED = "escalated"
    EXTENSION_PENDING = "extension_pending"
    # To the requester.
    APPROVED = "approved"
    DENIED = "denied"
    TIMED_OUT = "timed_out"
    FAILED = "failed"
    ACTIVE = "active"
    EXPIRING = "expiring"
    EXTENDED = "extended"
    EXTENSION_DENIED = "extension_denied"
    EXPIRED = "expired"
    REVOKED = "revoked"
    # To the security audience, at once.
    BREAK_GLASS = "break_glass"
    # To the operations audience (revoke_failing, audit_failing).
    ALERT_RAISED = "alert_raised"
    ALERT_CLEARED = "alert_cleared"
    # Not a message of its own: an approvers' message updated in place
    # (Slack ``chat.update``) once the request (or extension) is decided.
    DECIDED = "decided"


class Audience(StrEnum):
    APPROVERS = "approvers"
    REQUESTER = "requester"
    SECURITY = "security"
    OPERATIONS = "operations"


class Route(BaseModel):
    """One place a kind of notification goes: a channel of the configuration and an address on it.

    ``audience`` is ``requester``, ``security``, ``operations`` or
    ``group:<name>`` (the approvers in that group). ``target`` is the
    channel's address (a Slack channel or user id, an email address); None
    where the channel has one address (a webhook URL, the console).
    """

    channel: str
    audience: str
    target: str | None = None
    # Only these kinds of event (EventKind values); None: every kind.
    events: list[str] | None = None
    # First tried inside the workflow task (a local activity): a channel that answers in
    # milliseconds and takes a repeat without harm (console; webhook, by its Idempotency-Key).
    inline: bool = False

    @property
    def label(self) -> str:
        """Who, for the activity summary in Temporal UI: ``db-owners``, ``requester``."""
        return self.audience.removeprefix("group:")


class NotificationPlan(BaseModel):
    """Where a request's notifications go, decided when it was filed."""

    routes: list[Route] = Field(default_factory=list)
    # The expiry reminder: this long before the end, for grants at least
    # ``reminder_min_grant_s`` long (shorter ones end before it matters).
    reminder_lead_s: int = 300
    reminder_min_grant_s: int = 900
    # Each delivery is retried with backoff this many times at most, and
    # given up after this long in all: a notification never holds a grant up.
    max_attempts: int = 6
    give_up_after_s: int = 300
    # Where links point (the API's public URL), e.g. https://jit.example.com.
    public_url: str | None = None
    environment: str | None = None
    # How long an inline first attempt may hold the workflow task; 0: never inline.
    inline_ms: int = 0

    def routes_for(self, audiences: list[str], kind: str | None = None) -> list[Route]:
        """The routes of ``audiences`` that take ``kind``, each (channel, target) once."""
        seen: set[tuple[str, str | None]] = set()
        out: list[Route] = []
        for route in self.routes:
            key = (route.channel, route.target)
            wanted = kind is None or route.events is None or kind in route.events
            if route.audience in audiences and wanted and key not in seen:
                seen.add(key)
                out.append(route)
        return out


class NotificationEvent(BaseModel):
    """What happened to a request, with what a message about it shows. No secrets."""

    # Unique per request and event, the same in every retry: webhooks' idempotency key.
    id: str
    kind: EventKind
    at: datetime
    request_id: str
    requester: str
    resource: str
    action: str
    duration_s: int
    reason: str
    ticket: str | None = None
    status: str
    environment: str | None = None
    policy_reasons: list[str] = Field(default_factory=list)
    # The stage's approver groups (filed, escalated, extension_pending).
    groups: list[str] = Field(default_factory=list)
    approvals_needed: int = 0
    approvals: list[str] = Field(default_factory=list)
    # Who decided, revoked or extended, and why (a denial's reason, an alert's text).
    actor: str | None = None
    detail: str | None = None
    expires_at: datetime | None = None
    extension_s: int | None = None
    # How the access is used: the provisioner's type and the database role
    # (a name, never its password).
    provisioner: str = "none"
    principal: str | None = None
    database: str | None = None
    url: str | None = None


class MessageRef(BaseModel):
    """A message a channel posted that can be updated later (Slack: channel id and ``ts``)."""

    channel: str
    target: str
    ts: str


class Delivery(BaseModel):
    """What a channel sends: one event, one route."""

    route: Route
    event: NotificationEvent
    # For DECIDED: the message to update in place.
    ref: MessageRef | None = None
    max_attempts: int = 6


class Dispatch(BaseModel):
    """The ``deliver`` activity's input: one event, to each of its routes once, even across retries.

    One activity per event rather than per route: each costs the request's
    history a few events and the worker a workflow task, whatever it sends.
    """

    event: NotificationEvent
    routes: list[Route]
    # For DECIDED: per route, the message to update in place.
    refs: list[MessageRef | None] = Field(default_factory=list)
    max_attempts: int = 6
    # Attempts already made inline (1 for routes tried there): the retried activity makes the rest.
    attempts_made: int = 0
    # An inline first attempt (a local activity): each route gets this long, and what
    # fails is returned in ``Dispatched.failed`` for a retried activity, not raised.
    inline_ms: int | None = None

    def deliveries(self) -> list[Delivery]:
        refs = self.refs or [None] * len(self.routes)
        return [
            Delivery(route=r, event=self.event, ref=ref, max_attempts=self.max_attempts)
            for r, ref in zip(self.routes, refs, strict=True)
        ]


class Dispatched(BaseModel):
    """Per route of a :class:`Dispatch`: the message posted (updatable later), else None."""

    refs: list[MessageRef | None]
    # Inline attempts only, for the retried activity: routes (indexes) tried and not
    # delivered, and routes not tried (their channel failed, or was slow, inline lately).
    failed: list[int] = Field(default_factory=list)
    held_back: list[int] = Field(default_factory=list)
