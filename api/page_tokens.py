"""Page tokens for ``GET /v1/requests``: Temporal's token, sealed with an HMAC.

Temporal's visibility store does not refuse a forged page token cleanly (the
dev server answers "something went wrong, please retry" and the client retries
for seconds), so the API only passes on tokens it issued itself: the MAC covers
the caller and the exact visibility query, so a token is also useless for
another caller or another filter.

The key is derived from the access-token signing key, so every replica sharing
the signing keys accepts the others' tokens; after a key rotation old page
tokens stop working, which only means a client restarts its listing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

from cryptography.hazmat.primitives import serialization

from core.keys import SigningKey

_MAC_BYTES = 16
_TOKEN = re.compile(r"^[A-Za-z0-9_-]+={0,2}$")


class InvalidPageToken(ValueError):
    pass


class PageTokens:
    def __init__(self, key: bytes | None = None):
        self._key = key or secrets.token_bytes(32)

    @classmethod
    def from_signing_key(cls, signing: SigningKey) -> PageTokens:
        raw = signing.private.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return cls(hashlib.sha256(b"jit-access page tokens\x00" + raw).digest())

    def _mac(self, scope: str, raw: bytes) -> bytes:
        return hmac.new(self._key, scope.encode() + b"\x00" + raw, hashlib.sha256).digest()[:_MAC_BYTES]

    def seal(self, scope: str, raw: bytes) -> str:
        return base64.urlsafe_b64encode(self._mac(scope, raw) + raw).decode()

    def open(self, scope: str, token: str) -> bytes:
        if not _TOKEN.match(token):
            raise InvalidPageToken("page_token is not a token this API returned")
        try:
            data = base64.urlsafe_b64decode(token)
        except ValueError:
            raise InvalidPageToken("page_token is not a token this API returned") from None
        mac, raw = data[:_MAC_BYTES], data[_MAC_BYTES:]
        if not raw or not hmac.compare_digest(mac, self._mac(scope, raw)):
            raise InvalidPageToken("page_token is not a token this API returned for this query")
        return raw
