"""Approve / Deny clicks from Slack (``POST /v1/slack/interactions``): verified, acknowledged, then decided.

Slack signs every call with the app's signing secret; a call is taken only if
its signature matches, its timestamp is within 5 minutes and that signature
was not seen before (a replay). The seen signatures are kept in this process
only: with several API replicas behind a balancer, a replay that lands on
another replica within the window is refused there by nothing but the
workflow's own rules (each approver counts once, a decided request changes
no more).

Slack wants an answer within 3 seconds, so the route acknowledges at once and
the decision runs as a task: the SAME approve / deny path as the REST API
(api/requests_service.py, with every policy check), as the person the Slack
user id maps to in config/notifications.yaml (``users``: sub and groups; never
MFA, which a click cannot show); a Slack user id not listed there is looked up
by email (``users.info``, scope ``users:read.email``) and matched to the
``users`` entry with that email. What happened, or why nothing did, goes back
to the clicker alone (an ephemeral message through the payload's
``response_url``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import httpx
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier

from activities.channels.slack import APPROVE_ACTION, DENY_ACTION, escape
from api import decisions, errors
from api.policies import PolicyRuntime
from api.requests_service import RequestService
from core.models import AccessRequestView, Actor
from core.notify_config import NotificationConfig, SlackChannel, User

log = logging.getLogger("jit.api.slack")

WINDOW_S = 300  # Slack's advice: refuse a timestamp more than 5 minutes off
# Where the decision came from, in the request's history and audit trail.
APPROVE_COMMENT = "approved in Slack"
DENY_REASON = "denied in Slack"
_SIGNATURE = re.compile(r"^v0=[0-9a-f]{64}$")
_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")
_SLACK_ID = re.compile(r"^[A-Z0-9]{1,32}$")


@dataclass(frozen=True)
class Click:
    action: str  # APPROVE_ACTION or DENY_ACTION
    request_id: str
    slack_user: str
    response_url: str


def slack_channel(config: NotificationConfig | None) -> SlackChannel | None:
    """The (first) Slack channel of the notifications file: its signing secret checks the clicks."""
    for channel in (config.channels if config else {}).values():
        if isinstance(channel, SlackChannel):
            return channel
    return None


class ReplayGuard:
    """Signatures accepted in the last window: the same one again is a replay."""

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}

    def first_use(self, signature: str, timestamp: int, now: float) -> bool:
        # Forget what can no longer pass the timestamp check anyway.
        self._seen = {s: t for s, t in self._seen.items() if now - t <= WINDOW_S}
        if signature in self._seen:
            return False
        self._seen[signature] = timestamp
        return True


def verify(
    channel: SlackChannel, body: bytes, timestamp: str | None, signature: str | None, replays: ReplayGuard
) -> None:
    """The call is Slack's, recent and new; else 401 saying which check failed (503: no secret set)."""
    secret = os.environ.get(channel.signing_secret_env, "").strip()
    if not secret:
        raise errors.Unavailable(
            f"Slack interactivity is not set up on this server: {channel.signing_secret_env} is not set"
        )
    if not timestamp or not signature:
        raise errors.Unauthorized("not signed by Slack: X-Slack-Request-Timestamp and X-Slack-Signature are required")
    if not _TIMESTAMP.match(timestamp) or not _SIGNATURE.match(signature):
        raise errors.Unauthorized("not signed by Slack: malformed X-Slack-Request-Timestamp or X-Slack-Signature")
    now = time.time()
    if abs(now - int(timestamp)) > WINDOW_S:
        raise errors.Unauthorized("X-Slack-Request-Timestamp is more than 5 minutes away from now: refused")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise errors.Unauthorized("not signed by Slack: the body is not UTF-8") from None
    if not SignatureVerifier(secret).is_valid(text, timestamp, signature):
        raise errors.Unauthorized("not signed by Slack: the signature does not match the body")
    if not replays.first_use(signature, int(timestamp), now):
        raise errors.Unauthorized("replayed: this signed call was already received")


def parse(body: bytes) -> Click | None:
    """The Approve / Deny click in a verified ``payload=…`` body; None for anything else Slack sends."""
    try:
        form = parse_qs(body.decode("utf-8"), max_num_fields=20)
    except ValueError:
        raise errors.BadRequest("payload: the form has too many fields", field="payload") from None
    raw = form.get("payload")
    if not raw:
        raise errors.BadRequest("payload: is required (the form field Slack sends)", field="payload")
    try:
        payload = json.loads(raw[0])
    except ValueError:
        raise errors.BadRequest("payload: is not valid JSON", field="payload") from None
    if not isinstance(payload, dict) or payload.get("type") != "block_actions":
        return None  # other interactions (a shortcut, a view): nothing of ours
    actions = payload.get("actions")
    user = payload.get("user")
    response_url = payload.get("response_url")
    if not (isinstance(actions, list) and actions and isinstance(actions[0], dict) and isinstance(user, dict)):
        return None
    action, value, user_id = actions[0].get("action_id"), actions[0].get("value"), user.get("id")
    if action not in (APPROVE_ACTION, DENY_ACTION):
        return None  # the Open link button, or a button of another app
    if not (isinstance(value, str) and isinstance(user_id, str) and _SLACK_ID.match(user_id)):
        raise errors.BadRequest("payload: a button's value and the user's id are required", field="payload")
    if not (isinstance(response_url, str) and response_url.startswith(("https://", "http://"))):
        raise errors.BadRequest("payload: response_url is required", field="payload")
    return Click(action=action, request_id=value, slack_user=user_id, response_url=response_url)


class SlackDecider:
    """Runs a verified click as the mapped person, then tells them what happened."""

    def __init__(self, config: NotificationConfig, requests: RequestService, policies: PolicyRuntime) -> None:
        self._config = config
        self._requests = requests
        self._policies = policies
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, click: Click) -> None:
        """Decide in the background: Slack has its 200 already."""
        task = asyncio.create_task(self._run(click))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, click: Click) -> None:
        try:
            text = await self.decide(click)
        except Exception:
            log.exception("a Slack %s click on %s failed", click.action, click.request_id[:64])
            text = "Something went wrong on the jit-access server; nothing may have changed. Try `jit show` to check."
        await answer(click.response_url, text)

    async def decide(self, click: Click) -> str:
        """The ephemeral answer (mrkdwn, user strings escaped) to ``click``, after acting on it."""
        rid = click.request_id
        short = escape(rid[:8])
        user = self._config.slack_user(click.slack_user) or await self._by_email(click.slack_user)
        if user is None:
            return (
                f"Your Slack account (`{click.slack_user}`) is not linked to a jit-access identity, so nothing"
                " was changed. Ask an admin to add it under `users` in the notifications file."
            )
        actor = Actor(sub=user.sub, groups=list(user.groups), mfa=False)
        approving = click.action == APPROVE_ACTION
        verb = "approve" if approving else "deny"
        log.info("Slack %s of %s by %s (%s)", verb, rid[:64], user.sub, click.slack_user)
        try:
            if approving:
                view = await self._requests.approve(actor, rid, APPROVE_COMMENT)
            else:
                view = await self._requests.deny(actor, rid, DENY_REASON)
        except errors.Forbidden as e:
            if await self._mfa_would_do(actor, rid):
                command = f"jit approve {short}" if approving else f"jit deny {short} --reason '...'"
                return (
                    f"To {verb} request `{short}` you need MFA, which a click in Slack cannot show, so nothing"
                    f" was changed. Sign in with MFA and run:\n```{command}```"
                )
            return f"You cannot {verb} request `{short}`: {escape(e.message)}. Nothing was changed."
        except errors.NotFound:
            # Who may not see a request gets 404 from the API; in Slack they saw the message.
            return (
                f"You cannot {verb} request `{short}`: you are not in its approver groups (or it does not exist)."
                " Nothing was changed."
            )
        except errors.Conflict as e:
            return f"Request `{short}` was not changed: {escape(e.message)}."
        except errors.ApiError as e:
            return f"Could not {verb} request `{short}` now: {escape(e.message)}. Try again, or use `jit {verb}`."
        return _done(verb, view)

    async def _by_email(self, slack_id: str) -> User | None:
        """The ``users`` entry whose email is this Slack user's (``users.info``), if any."""
        channel = slack_channel(self._config)
        token = os.environ.get(channel.token_env) if channel else None
        if channel is None or not token or not any(u.email for u in self._config.users):
            return None
        client = WebClient(token=token, base_url=channel.base_url, timeout=int(channel.timeout_s))
        try:
            found = await asyncio.to_thread(client.users_info, user=slack_id)  # slack-sdk's sync client: no aiohttp
        except SlackApiError as e:
            log.warning("Slack users.info for %s failed: %s", slack_id, e.response.get("error"))
            return None
        email = ((found.get("user") or {}).get("profile") or {}).get("email")
        if not isinstance(email, str) or not email:
            return None
        return next((u for u in self._config.users if u.email and u.email.lower() == email.lower()), None)

    async def _mfa_would_do(self, actor: Actor, request_id: str) -> bool:
        """Whether the same person with MFA would have been allowed: then MFA is what was missing."""
        try:
            view = await self._requests.get(actor, request_id)
        except errors.ApiError:
            return False
        if view.requester == actor.sub:
            return False  # never theirs to decide, MFA or not

        def allowed(mfa: bool) -> bool:
            try:
                decisions.approver_reasons(
                    self._policies.engine(),
                    actor.model_copy(update={"mfa": mfa}),
                    view,
                    policy_now=self._policies.clock(),
                )
            except errors.ApiError:
                return False
            return True

        return allowed(True) and not allowed(False)


def _done(verb: str, view: AccessRequestView) -> str:
    what = f"{escape(view.requester)}: {escape(view.action)} on {escape(view.resource)}"
    done = "approved" if verb == "approve" else "denied"
    return f"You {done} request `{escape(view.id[:8])}` ({what}). It is now *{view.status}*."


async def answer(response_url: str, text: str) -> None:
    """An ephemeral message to the clicker (Slack's ``response_url``); logged, not raised, if it fails."""
    body: dict[str, Any] = {"response_type": "ephemeral", "replace_original": False, "text": text}
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            resp = await http.post(response_url, json=body)
        if resp.status_code >= 400:
            log.warning("Slack response_url answered %d", resp.status_code)
    except httpx.HTTPError as e:
        log.warning("could not answer a Slack click: %s", type(e).__name__)
