"""The Slack channel: Block Kit messages through the Web API (slack-sdk), Approve / Deny buttons for approvers.

Approvers' messages (``decidable``) carry the buttons; a click comes back to
``POST /v1/slack/interactions`` (api/slack_interactions.py). Their
:class:`MessageRef` (channel id and ``ts``) is returned so that, once the
request is decided (from Slack, the CLI or the API), the workflow sends an
``EventKind.DECIDED`` delivery with ``ref`` set: that message is updated in
place with the new status and who decided, and loses its buttons.

Nothing a user typed is ever mrkdwn: the title and every fact's value are
``plain_text`` objects (Slack shows them as they are: ``*x*`` is not bold,
``<!channel>`` pings nobody); the few mrkdwn strings (labels, commands, the
notification fallback) are escaped as Slack's docs say (``& < >``).
"""

from __future__ import annotations

import os
from typing import Any

from slack_sdk import WebClient

from activities.channels.message import Message, build
from core.notify_config import SlackChannel
from core.notify_models import Delivery, EventKind, MessageRef

APPROVE_ACTION = "jit_approve"
DENY_ACTION = "jit_deny"

# Block Kit limits (https://docs.slack.dev/reference/block-kit/): header text,
# one section field, the fields of one section.
_HEADER_MAX = 150
_FIELD_MAX = 2000
_FIELDS_PER_SECTION = 10


class SlackConfigError(RuntimeError):
    pass


def escape(text: str) -> str:
    """``text`` fit for Slack mrkdwn: ``& < >`` escaped, so no ``<!channel>``, ``<@U…>`` or ``<url|label>``."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _plain(text: str, limit: int = _FIELD_MAX) -> dict[str, Any]:
    text = text or " "  # Slack refuses an empty text object
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return {"type": "plain_text", "text": text, "emoji": False}


def blocks(msg: Message, request_id: str, *, buttons: bool) -> list[dict[str, Any]]:
    """The Block Kit of ``msg``: the title, the facts as label / value pairs, the commands, the buttons."""
    out: list[dict[str, Any]] = [{"type": "header", "text": _plain(msg.title, _HEADER_MAX)}]
    fields: list[dict[str, Any]] = []
    for label, value in msg.facts:
        fields.append({"type": "mrkdwn", "text": f"*{escape(label)}*"})
        fields.append(_plain(value))
    for i in range(0, len(fields), _FIELDS_PER_SECTION):
        out.append({"type": "section", "fields": fields[i : i + _FIELDS_PER_SECTION]})
    if msg.commands:
        # In a code block nothing formats; the escape keeps a stray ``<`` from becoming a link.
        code = "\n".join(escape(c.replace("`", "'")) for c in msg.commands)
        out.append({"type": "section", "text": {"type": "mrkdwn", "text": f"```{code}```"}})
    elements: list[dict[str, Any]] = []
    if buttons:
        elements.append(
            {
                "type": "button",
                "action_id": APPROVE_ACTION,
                "text": _plain("Approve"),
                "style": "primary",
                "value": request_id,
            }
        )
        elements.append(
            {"type": "button", "action_id": DENY_ACTION, "text": _plain("Deny"), "style": "danger", "value": request_id}
        )
    if msg.url:
        # A link button: Slack opens the URL (and posts a click we ignore); no mrkdwn link to forge.
        elements.append({"type": "button", "action_id": "jit_open", "text": _plain("Open"), "url": msg.url})
    if elements:
        out.append({"type": "actions", "block_id": f"jit:{request_id}"[:255], "elements": elements})
    return out


class SlackSender:
    def __init__(self, cfg: SlackChannel) -> None:
        token = os.environ.get(cfg.token_env, "").strip()
        if not token:
            # The variable's name, never a value.
            raise SlackConfigError(
                f"the Slack channel needs a bot token (xoxb-…) in the environment variable {cfg.token_env},"
                " which is not set"
            )
        base_url = cfg.base_url if cfg.base_url.endswith("/") else cfg.base_url + "/"
        self._client = WebClient(token=token, base_url=base_url, timeout=int(max(1, cfg.timeout_s)))

    def send(self, delivery: Delivery) -> MessageRef | None:
        event = delivery.event
        msg = build(event)
        # The notification's text (and what a screen reader or an old client shows): the title, escaped.
        fallback = escape(msg.title)
        if delivery.ref is not None:
            # The decision: the approvers' message updated in place, its buttons gone.
            self._client.chat_update(
                channel=delivery.ref.target,
                ts=delivery.ref.ts,
                text=fallback,
                blocks=blocks(msg, event.request_id, buttons=False),
            )
            return delivery.ref
        target = delivery.route.target
        if not target:
            raise SlackConfigError(f"route {delivery.route.label!r} names no Slack channel or user to post to")
        decidable = msg.decidable and event.kind is not EventKind.DECIDED
        resp = self._client.chat_postMessage(
            channel=target,
            text=fallback,
            blocks=blocks(msg, event.request_id, buttons=decidable),
            unfurl_links=False,
            unfurl_media=False,
        )
        if not decidable:
            return None
        return MessageRef(channel=delivery.route.channel, target=str(resp["channel"]), ts=str(resp["ts"]))
