"""Access tokens for requesters: RFC 9068 JWTs signed with the key ring's signing key (RS256 by default).

Minted by the API on each credentials call from the live grant, with a short
TTL and never past the grant's expiry, so the token is never stored anywhere.
``jti`` is the request id: revoking the request revokes every token of it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from core.grants import GrantRow
from core.keys import KeyRing

TOKEN_TYPE = "at+jwt"  # noqa: S105 (a media type, not a secret)
CLIENT_ID = "jit-access"


def mint(
    keys: KeyRing, grant: GrantRow, *, issuer: str, ttl_s: int, now: datetime | None = None
) -> tuple[str, datetime]:
    now = now or datetime.now(UTC)
    expires = min(now + timedelta(seconds=ttl_s), grant.expires_at)
    claims = {
        "iss": issuer,
        "sub": grant.requester,
        "aud": grant.resource,
        "scope": grant.action,
        "action": grant.action,
        "client_id": CLIENT_ID,
        "jti": grant.request_id,
        "iat": int(now.timestamp()),
        "nbf": int(now.timestamp()),
        "exp": int(expires.timestamp()),
    }
    key = keys.active
    token = jwt.encode(claims, key.private, algorithm=key.alg, headers={"kid": key.kid, "typ": TOKEN_TYPE})
    return token, datetime.fromtimestamp(claims["exp"], UTC)


class InvalidAccessToken(Exception):
    pass


def verify(keys: KeyRing, token: str, *, issuer: str) -> dict[str, Any]:
    """Signature, type, issuer and time checks; revocation is the caller's job."""
    try:
        header = jwt.get_unverified_header(token)
        key = keys.get(header.get("kid", ""))
        if key is None or header.get("typ") != TOKEN_TYPE:
            raise InvalidAccessToken("unknown key or wrong token type")
        return jwt.decode(
            token,
            key.public,
            algorithms=[key.alg],  # pinned to the key: a header's "alg" chooses nothing
            issuer=issuer,
            options={"require": ["iss", "sub", "aud", "jti", "exp", "iat", "nbf"], "verify_aud": False},
        )
    except jwt.PyJWTError as e:
        raise InvalidAccessToken(str(e)) from e


class VerifiedTokens:
    """Remembers tokens whose signature checked out, until they expire.

    A signature verdict never changes for the same token string, so resource
    servers introspecting the same token over and over pay for one signature
    check; expiry is re-checked on every call, revocation is the caller's.
    """

    def __init__(self, keys: KeyRing, *, issuer: str, size: int = 10_000):
        self._keys = keys
        self._issuer = issuer
        self._size = size
        self._claims: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def verify(self, token: str) -> dict[str, Any]:
        claims = self._claims.get(token)
        if claims is None:
            claims = verify(self._keys, token, issuer=self._issuer)
            self._claims[token] = claims
            if len(self._claims) > self._size:
                self._claims.popitem(last=False)
        if claims["exp"] <= time.time():
            self._claims.pop(token, None)
            raise InvalidAccessToken("token has expired")
        return claims
