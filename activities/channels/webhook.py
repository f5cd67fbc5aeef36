"""The webhook channel: a signed, versioned JSON event POSTed to one URL.

The body's schema and the signature are documented in docs/notifications.md
(the signature in core/webhook_signature.py). Every attempt of one delivery
sends the same body with the same ``Idempotency-Key`` (the event id) and a
fresh timestamp and signature: a receiver that saw the id already answers 2xx
and does nothing. Anything but a 2xx, a timeout or a refused connection
raises, and the ``deliver`` activity retries.
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import urlsplit

import httpx

from activities.channels.message import build, clean
from core.notify_config import WebhookChannel
from core.notify_models import EVENT_SCHEMA_VERSION, Delivery, MessageRef, NotificationEvent
from core.webhook_signature import sign

SCHEMA = "jit-access.notification"
USER_AGENT = f"jit-access-webhook/{EVENT_SCHEMA_VERSION}"


class WebhookError(RuntimeError):
    pass


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def payload(delivery: Delivery) -> dict[str, Any]:
    """The event as receivers get it (docs/notifications.md, "Event schema"). No secrets: the event has none."""
    event: NotificationEvent = delivery.event
    return {
        "schema": SCHEMA,
        "version": EVENT_SCHEMA_VERSION,
        "id": event.id,
        "type": event.kind.value,
        "occurred_at": _iso(event.at),
        "audience": delivery.route.audience,
        "summary": build(event).title,
        "request": {
            "id": event.request_id,
            "requester": clean(event.requester),
            "resource": clean(event.resource),
            "action": event.action,
            "duration_s": event.duration_s,
            "reason": clean(event.reason),
            "ticket": clean(event.ticket) if event.ticket else None,
            "status": event.status,
            "environment": clean(event.environment) if event.environment else None,
            "policy_reasons": [clean(r) for r in event.policy_reasons],
            "url": event.url,
        },
        "approval": {
            "groups": list(event.groups),
            "approvals_needed": event.approvals_needed,
            "approved_by": [clean(a) for a in event.approvals],
        },
        "actor": clean(event.actor) if event.actor else None,
        "detail": clean(event.detail) if event.detail else None,
        "grant": {
            "expires_at": _iso(event.expires_at),
            "extension_s": event.extension_s,
            "provisioner": event.provisioner,
            "principal": event.principal,
            "database": event.database,
        },
    }


def encode(delivery: Delivery) -> bytes:
    """The exact bytes sent and signed: compact, keys in schema order."""
    return json.dumps(payload(delivery), separators=(",", ":"), ensure_ascii=False).encode()


def _where(url: str) -> str:
    # For error messages: no userinfo, no query string (either may hold a token).
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}{parts.path}"


class WebhookSender:
    def __init__(self, cfg: WebhookChannel) -> None:
        secret = os.environ.get(cfg.secret_env)
        if not secret:
            raise WebhookError(f"webhook channel: the environment variable {cfg.secret_env} (secret_env) is not set")
        self._cfg = cfg
        self._secret = secret
        self._client = httpx.Client(timeout=cfg.timeout_s, follow_redirects=False)

    def send(self, delivery: Delivery) -> MessageRef | None:
        body = encode(delivery)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Idempotency-Key": delivery.event.id,
            **sign(self._secret, delivery.event.id, body),
        }
        where = _where(self._cfg.url)
        try:
            response = self._client.post(self._cfg.url, content=body, headers=headers)
        except httpx.TimeoutException:
            raise WebhookError(f"{where}: no answer within {self._cfg.timeout_s:g}s") from None
        except httpx.HTTPError as e:
            raise WebhookError(f"{where}: {type(e).__name__}") from None
        if not response.is_success:
            raise WebhookError(f"{where} answered {response.status_code}")
        return None
