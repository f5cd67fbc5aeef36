"""Webhook: tell another system to grant, extend or revoke, and let it do the work.

Catalog block::

    provisioner:
      type: webhook
      url: https://iam.internal/jit/events   # no secret in the URL: it is in history
      secret_env: JIT_WEBHOOK_IAM_SECRET     # env var holding the HMAC key
      timeout_s: 10

Each event is a JSON POST ``{event, request_id, requester, resource, action,
activated_at, expires_at}`` with ``X-Jit-Signature: sha256=<hex HMAC of the
body>``, ``X-Jit-Timestamp`` and ``Idempotency-Key: <request_id>:<event>``:
Temporal retries, so the receiver sees an event at least once and must treat
repeats of a key as one.

A 2xx is success; 404 or 410 on revoke means already gone, also success.
5xx, 408, 425, 429 and transport errors are retryable; any other answer is a
non-retryable rejection (the provisioning activity still retries revokes).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
from temporalio.exceptions import ApplicationError

from activities.provisioners.base import GrantOutcome, GrantSpec, Heartbeat, RevokeOutcome, no_heartbeat
from core import provisioners
from core.provisioners.errors import ProvisionerConfigError
from core.provisioners.webhook_config import parse_settings

Event = Literal["grant", "extend", "revoke"]
_RETRYABLE_4XX = {408, 425, 429}
_GONE = {404, 410}
_MAX_RETRY_AFTER_S = 300


def sign(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def event_body(event: Event, spec: GrantSpec) -> bytes:
    return json.dumps(
        {
            "event": event,
            "request_id": spec.request_id,
            "requester": spec.requester,
            "resource": spec.resource,
            "action": spec.action,
            "activated_at": spec.activated_at.isoformat(),
            "expires_at": spec.expires_at.isoformat(),
        },
        separators=(",", ":"),
    ).encode()


class WebhookProvisioner:
    """Built for one request: extend and revoke events carry the grant's facts too."""

    name = provisioners.WEBHOOK

    def __init__(
        self,
        settings: Mapping[str, Any],
        *,
        context: GrantSpec,
        environ: Mapping[str, str] | None = None,
        heartbeat: Heartbeat = no_heartbeat,
        transport: httpx.BaseTransport | None = None,
    ):
        self._cfg = parse_settings(settings)
        env = os.environ if environ is None else environ
        secret = env.get(self._cfg.secret_env)
        if not secret:
            raise ProvisionerConfigError(f"environment variable {self._cfg.secret_env} (the webhook secret) is not set")
        self._secret = secret.encode()
        self._context = context
        self._heartbeat = heartbeat
        self._transport = transport
        # Errors name the endpoint by origin only: they land in history.
        parts = urlsplit(self._cfg.url)
        self._origin = f"{parts.scheme}://{parts.netloc}"

    def _check(self, request_id: str) -> None:
        if request_id != self._context.request_id:
            raise ValueError(f"provisioner built for request {self._context.request_id}, not {request_id}")

    def grant(self, spec: GrantSpec) -> GrantOutcome:
        self._check(spec.request_id)
        self._post("grant", spec)
        return GrantOutcome(request_id=spec.request_id, provisioner=self.name, expires_at=spec.expires_at)

    def extend(self, request_id: str, expires_at: datetime) -> None:
        self._check(request_id)
        self._post("extend", self._context.model_copy(update={"expires_at": expires_at}))

    def revoke(self, request_id: str) -> RevokeOutcome:
        self._check(request_id)
        gone = self._post("revoke", self._context)
        return RevokeOutcome(request_id=request_id, provisioner=self.name, already_gone=gone)

    def verify_revoked(self, request_id: str) -> bool:
        # The receiver's success answer to the revoke event is all the
        # confirmation a webhook can give; revoke raises on anything else.
        self._check(request_id)
        return True

    def _post(self, event: Event, spec: GrantSpec) -> bool:
        """Deliver one event; True when a revoke found it already gone."""
        body = event_body(event, spec)
        headers = {
            "Content-Type": "application/json",
            "X-Jit-Signature": sign(self._secret, body),
            "X-Jit-Timestamp": str(int(time.time())),
            "Idempotency-Key": f"{spec.request_id}:{event}",
        }
        self._heartbeat(f"posting {event}")
        try:
            with httpx.Client(timeout=self._cfg.timeout_s, transport=self._transport) as client:
                response = client.post(self._cfg.url, content=body, headers=headers)
        except httpx.HTTPError as e:
            raise ApplicationError(
                f"webhook {event} to {self._origin}: {type(e).__name__}", type="WebhookUnavailable"
            ) from e
        status = response.status_code
        if 200 <= status < 300:
            return False
        if event == "revoke" and status in _GONE:
            return True
        message = f"webhook {event} to {self._origin}: HTTP {status}"
        if status >= 500 or status in _RETRYABLE_4XX:
            raise ApplicationError(message, type="WebhookUnavailable", next_retry_delay=_retry_after(response))
        raise ApplicationError(f"{message}: {response.text[:200]}", type="WebhookRejected", non_retryable=True)


def _retry_after(response: httpx.Response) -> timedelta | None:
    # Honour the receiver's Retry-After (seconds form), within reason.
    value = response.headers.get("Retry-After", "")
    if value.isdigit():
        return timedelta(seconds=min(int(value), _MAX_RETRY_AFTER_S))
    return None
