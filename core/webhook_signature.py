"""Webhook signatures: how jit-access signs an event and how a receiver checks it.

The sender (activities/channels/webhook.py) and the receivers' documentation
(docs/notifications.md) use these two functions, so the format is written
down once:

    Jit-Webhook-Id:        the event id (also the Idempotency-Key)
    Jit-Webhook-Timestamp: Unix seconds when this attempt was signed
    Jit-Webhook-Signature: v1=<hex HMAC-SHA256(secret, f"{timestamp}.{id}.".encode() + body)>

The timestamp and id are inside the signed bytes, so neither can be swapped
onto another body; a receiver refuses a timestamp more than ``tolerance``
seconds away from its clock, so a captured request cannot be replayed later.
The header may carry several ``v1=`` values separated by commas (while a
secret is rotated); one match is enough.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

SCHEME = "v1"
ID_HEADER = "Jit-Webhook-Id"
TIMESTAMP_HEADER = "Jit-Webhook-Timestamp"
SIGNATURE_HEADER = "Jit-Webhook-Signature"
TOLERANCE_S = 300


class SignatureError(ValueError):
    """The request is not a genuine, fresh jit-access event: refuse it (401)."""


def _key(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def signature(secret: str | bytes, timestamp: int, event_id: str, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``f"{timestamp}.{event_id}."`` followed by the body."""
    signed = f"{timestamp}.{event_id}.".encode() + body
    return hmac.new(_key(secret), signed, hashlib.sha256).hexdigest()


def sign(secret: str | bytes, event_id: str, body: bytes, now: float | None = None) -> dict[str, str]:
    """The three headers for one attempt to send ``body``."""
    timestamp = int(time.time() if now is None else now)
    return {
        ID_HEADER: event_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: f"{SCHEME}={signature(secret, timestamp, event_id, body)}",
    }


def verify(
    secret: str | bytes,
    headers: Mapping[str, str],
    body: bytes,
    now: float | None = None,
    tolerance: int = TOLERANCE_S,
) -> str:
    """The event id of a genuine request; raises :class:`SignatureError` otherwise.

    ``headers``: any mapping (names compared without case); ``body``: the raw
    bytes received, before any JSON parsing.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    event_id = lowered.get(ID_HEADER.lower())
    stamp = lowered.get(TIMESTAMP_HEADER.lower())
    given = lowered.get(SIGNATURE_HEADER.lower())
    if not event_id or not stamp or not given:
        raise SignatureError(f"missing {ID_HEADER}, {TIMESTAMP_HEADER} or {SIGNATURE_HEADER}")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise SignatureError(f"{TIMESTAMP_HEADER} is not Unix seconds") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise SignatureError(f"{TIMESTAMP_HEADER} is more than {tolerance}s from now")
    expected = signature(secret, timestamp, event_id, body)
    candidates = [part.strip() for part in given.split(",")]
    if not any(
        scheme == SCHEME and hmac.compare_digest(value.encode(), expected.encode())
        for scheme, _, value in (c.partition("=") for c in candidates)
    ):
        raise SignatureError(f"{SIGNATURE_HEADER} does not match the body")
    return event_id
