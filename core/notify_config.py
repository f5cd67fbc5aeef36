"""config/notifications.yaml: the channels, who hears what through which, and people's addresses.

Read by the worker (channels: how to send) and the API (routes, when a request
is filed: :meth:`NotificationConfig.plan`; users, to map a Slack click to an
identity). Secrets only by the name of an environment variable (``*_env``),
as the catalog's ``dsn_env``: the file can be committed, and a route stored
in history names a channel, never its credentials.
"""

from __future__ import annotations

import fnmatch
from functools import partial
from pathlib import Path
from typing import Annotated, ClassVar, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from core.durations import parse_duration
from core.models import ResourcePolicy
from core.notify_models import Audience, EventKind, NotificationPlan, Route

Seconds = Annotated[int, BeforeValidator(parse_duration)]
EnvName = Annotated[str, Field(pattern=r"^[A-Z_][A-Z0-9_]*$", description="the name of an environment variable")]


class NotifyConfigError(ValueError):
    pass


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _ChannelType(_Strict):
    """What each type of channel is, beside its settings: ``per_person``, a requester's
    messages need their address (from ``users``); ``inline``, attempt 1 may run inside the
    workflow task (core/notify_models.Route.inline): the channel answers in milliseconds and
    takes a repeat without harm. Slack and SMTP take hundreds of milliseconds, and a repeat
    would post twice, so theirs are always retried activities."""

    per_person: ClassVar[bool] = False
    inline: ClassVar[bool] = False


class ConsoleChannel(_ChannelType):
    type: Literal["console"]
    inline: ClassVar[bool] = True


class SlackChannel(_ChannelType):
    type: Literal["slack"]
    per_person: ClassVar[bool] = True
    token_env: EnvName = "JIT_SLACK_BOT_TOKEN"  # noqa: S105 - a variable name
    signing_secret_env: EnvName = "JIT_SLACK_SIGNING_SECRET"  # noqa: S105 - a variable name
    # Slack's Web API; another URL only for a test double or a proxy.
    base_url: str = "https://slack.com/api/"
    timeout_s: float = Field(default=10.0, gt=0)


class EmailChannel(_ChannelType):
    type: Literal["email"]
    per_person: ClassVar[bool] = True
    host: str
    port: int = Field(default=587, gt=0, lt=65536)
    starttls: bool = True
    username_env: EnvName | None = None
    password_env: EnvName | None = None
    sender: str
    timeout_s: float = Field(default=10.0, gt=0)


class WebhookChannel(_ChannelType):
    type: Literal["webhook"]
    inline: ClassVar[bool] = True  # receivers drop a repeat by its Idempotency-Key
    url: str = Field(pattern=r"^https?://")
    secret_env: EnvName
    timeout_s: float = Field(default=10.0, gt=0)


Channel = Annotated[ConsoleChannel | SlackChannel | EmailChannel | WebhookChannel, Field(discriminator="type")]


class Destination(_Strict):
    channel: str
    # A Slack channel ("#db-owners" or an id), an email address. Absent for the
    # requester: their own address from ``users``.
    target: str | None = None


def _destination(value: object) -> object:
    return {"channel": value} if isinstance(value, str) else value


class RouteRule(_Strict):
    audience: Audience
    # Filters; absent means any. ``groups`` only for approvers; ``resources`` are globs.
    groups: list[str] | None = None
    resources: list[str] | None = None
    environments: list[str] | None = None
    # Only these events (filed, escalated, active, expiring, expired, revoked, ...); absent: all.
    events: list[EventKind] | None = None
    to: list[Annotated[Destination, BeforeValidator(_destination)]] = Field(min_length=1)

    def matches(self, resource: str, environment: str | None) -> bool:
        if self.resources is not None and not any(fnmatch.fnmatchcase(resource, p) for p in self.resources):
            return False
        return self.environments is None or environment in self.environments


class User(_Strict):
    """A person's addresses, and who they are when they click in Slack."""

    sub: str
    email: str | None = None
    slack: str | None = None  # Slack user id (U…)
    groups: list[str] = Field(default_factory=list)


class NotificationConfig(_Strict):
    channels: dict[str, Channel] = Field(default_factory=dict)
    routes: list[RouteRule] = Field(default_factory=list)
    users: list[User] = Field(default_factory=list)
    reminder_lead: Seconds = 300
    reminder_min_grant: Seconds = 900
    max_attempts: int = Field(default=6, ge=1, le=20)
    give_up_after: Seconds = 300
    # The first attempt to a console or webhook channel runs inside the workflow task for at
    # most this long (no round trip to Temporal when it succeeds); 0: every delivery an activity.
    inline_ms: int = Field(default=500, ge=0, le=2000)

    @model_validator(mode="after")
    def _known_channels(self) -> NotificationConfig:
        for i, rule in enumerate(self.routes):
            for dest in rule.to:
                if dest.channel not in self.channels:
                    raise ValueError(f"routes[{i}]: no channel named {dest.channel!r} under channels")
        return self

    @classmethod
    def load(cls, path: Path) -> NotificationConfig:
        try:
            data = yaml.safe_load(path.read_bytes()) or {}
        except OSError as e:
            raise NotifyConfigError(f"{path}: cannot read: {e.strerror}") from e
        except yaml.YAMLError as e:
            raise NotifyConfigError(f"{path}: not valid YAML: {e}") from e
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            errs = "; ".join(f"{'.'.join(map(str, err['loc'])) or '(top)'}: {err['msg']}" for err in e.errors())
            raise NotifyConfigError(f"{path}: {errs}") from e

    def user(self, sub: str) -> User | None:
        return next((u for u in self.users if u.sub == sub), None)

    def slack_user(self, slack_id: str) -> User | None:
        return next((u for u in self.users if u.slack == slack_id), None)

    def plan(
        self,
        *,
        requester: str,
        resource: str,
        environment: str | None,
        policy: ResourcePolicy,
        public_url: str | None,
    ) -> NotificationPlan:
        """Every route this request's notifications may take, expanded to addresses."""
        groups = _unique(
            [g for st in policy.effective_stages() for g in (*st.groups, *st.escalate_to)] + policy.review_groups
        )
        routes: list[Route] = []
        for rule in self.routes:
            if not rule.matches(resource, environment):
                continue
            kinds = [k.value for k in rule.events] if rule.events is not None else None
            for dest in rule.to:
                route = partial(Route, channel=dest.channel, events=kinds, inline=self._inline(dest.channel))
                if rule.audience is Audience.APPROVERS:
                    for g in groups:
                        if rule.groups is None or g in rule.groups:
                            routes.append(route(audience=f"group:{g}", target=dest.target))
                elif rule.audience is Audience.REQUESTER:
                    target = dest.target or self._address(dest.channel, requester)
                    if target is not None or not self._needs_address(dest.channel):
                        routes.append(route(audience=rule.audience.value, target=target))
                else:
                    routes.append(route(audience=rule.audience.value, target=dest.target))
        return NotificationPlan(
            routes=routes,
            reminder_lead_s=self.reminder_lead,
            reminder_min_grant_s=self.reminder_min_grant,
            max_attempts=self.max_attempts,
            give_up_after_s=self.give_up_after,
            public_url=public_url,
            environment=environment,
            inline_ms=self.inline_ms,
        )

    def _inline(self, channel: str) -> bool:
        return self.inline_ms > 0 and self.channels[channel].inline

    def _needs_address(self, channel: str) -> bool:
        return self.channels[channel].per_person

    def _address(self, channel: str, sub: str) -> str | None:
        kind = self.channels[channel].type
        user = self.user(sub)
        if kind == "slack":
            return user.slack if user else None
        if kind == "email":
            if user and user.email:
                return user.email
            return sub if "@" in sub else None
        return None


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def load_notifications(path: Path | None) -> NotificationConfig | None:
    """The configuration at ``path`` (JIT_NOTIFICATIONS_PATH), None when unset: nothing is sent."""
    return NotificationConfig.load(path) if path is not None else None
