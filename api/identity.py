"""Who is calling: verify the ``Authorization: Bearer`` identity token.

Two issuers: an OIDC provider (issuer, audience, JWKS URL from settings) and,
only when switched on, the dev issuer. Algorithms are pinned per issuer;
``exp``, ``iat``, ``aud``, ``iss`` and ``sub`` are required. Verified tokens are
cached until they expire, so a busy caller (a resource server introspecting)
pays for the signature check once.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

import jwt
from starlette.concurrency import run_in_threadpool

from core import dev_identity
from core.models import Actor
from core.settings import Settings

_REQUIRED = ["exp", "iat", "iss", "aud", "sub"]
_CACHE_SIZE = 10_000


class Unauthenticated(Exception):
    pass


class IdentityVerifier:
    def __init__(self, settings: Settings):
        self._settings = settings
        self._dev_key = dev_identity.dev_key(settings).public if settings.dev_identity else None
        self._jwks = (
            jwt.PyJWKClient(settings.oidc_jwks_url, cache_keys=True, lifespan=300, timeout=5)
            if settings.oidc_issuer and settings.oidc_jwks_url
            else None
        )
        self._cache: OrderedDict[str, tuple[Actor, float]] = OrderedDict()

    async def authenticate(self, token: str) -> Actor:
        cached = self._cache.get(token)
        if cached is not None and cached[1] > time.time():
            return cached[0]
        # A JWKS fetch on a cache miss blocks: keep it off the event loop.
        actor, expires = await run_in_threadpool(self._verify, token)
        self._cache[token] = (actor, expires)
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        return actor

    def _verify(self, token: str) -> tuple[Actor, float]:
        try:
            issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
        except jwt.PyJWTError as e:
            raise Unauthenticated("identity token is malformed") from e
        try:
            if self._dev_key is not None and issuer == dev_identity.ISSUER:
                claims = self._decode(token, self._dev_key, [dev_identity.ALGORITHM], issuer, dev_identity.AUDIENCE)
                groups = claims.get("groups", [])
            elif self._jwks is not None and issuer == self._settings.oidc_issuer:
                key = self._jwks.get_signing_key_from_jwt(token).key
                claims = self._decode(
                    token, key, self._settings.oidc_algorithms, issuer, self._settings.oidc_audience
                )
                groups = claims.get(self._settings.oidc_groups_claim, [])
            else:
                raise Unauthenticated("identity token is from an issuer this service does not trust")
        except jwt.ExpiredSignatureError as e:
            raise Unauthenticated("identity token has expired") from e
        except jwt.PyJWTError as e:
            raise Unauthenticated(f"identity token rejected: {e}") from e
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise Unauthenticated("identity token groups claim must be a list of strings")
        return Actor(sub=str(claims["sub"]), groups=groups), float(claims["exp"])

    @staticmethod
    def _decode(token: str, key: Any, algorithms: list[str], issuer: str, audience: str | None) -> dict[str, Any]:
        return jwt.decode(
            token,
            key,
            algorithms=algorithms,
            issuer=issuer,
            audience=audience,
            options={"require": _REQUIRED},
        )
