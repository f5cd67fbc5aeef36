"""Who is calling: verify the ``Authorization: Bearer`` identity token.

Two issuers: an OIDC provider (issuer, audience, JWKS URL from settings) and,
only when switched on, the dev issuer. Algorithms are pinned per issuer;
``exp``, ``iat``, ``aud``, ``iss`` and ``sub`` are required. Verified tokens are
cached until they expire, so a busy caller (a resource server introspecting)
pays for the signature check once.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Any

import jwt
from starlette.concurrency import run_in_threadpool

from core import dev_identity
from core.models import Actor
from core.settings import Settings
from policy import mfa_from_claims

log = logging.getLogger("jit.api.identity")

_REQUIRED = ["exp", "iat", "iss", "aud", "sub"]
_CACHE_SIZE = 10_000
_MAX_TOKEN_CHARS = 16_384

# Fixed wording per failure: PyJWT's own messages can quote header values
# (a kid, say), and nothing from the token goes back to the caller.
_REASONS: list[tuple[type[Exception], str]] = [
    (jwt.ExpiredSignatureError, "identity token has expired; get a new one"),
    (jwt.ImmatureSignatureError, "identity token is not valid yet (nbf or iat is in the future)"),
    (jwt.InvalidAudienceError, "identity token is for another audience than this service"),
    (jwt.InvalidIssuerError, "identity token is from an issuer this service does not trust"),
    (jwt.InvalidSignatureError, "identity token signature does not verify"),
    (jwt.InvalidAlgorithmError, "identity token is signed with an algorithm this service does not accept"),
    (jwt.PyJWKClientError, "identity token is signed with a key the identity provider does not publish"),
    (jwt.InvalidKeyError, "identity token is signed with an algorithm this service does not accept"),
    (jwt.DecodeError, "identity token is malformed"),
]


class Unauthenticated(Exception):
    """The caller's identity token is missing, malformed or not acceptable: 401."""


class IdentityProviderUnavailable(Exception):
    """The OIDC provider's keys could not be fetched: not the caller's fault, 503."""


def _reason(e: jwt.PyJWTError) -> str:
    if isinstance(e, jwt.MissingRequiredClaimError):
        return f"identity token lacks the required {e.claim!r} claim"
    for kind, reason in _REASONS:
        if isinstance(e, kind):
            return reason
    return "identity token was rejected"


def actor_from_claims(claims: dict[str, Any], groups_claim: str) -> Actor:
    """The caller a verified token's claims name: the REST API's bearer tokens and the web
    page's ID tokens (api/ui/auth.py) alike, so a policy decides the same either way."""
    groups = claims.get(groups_claim, [])
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise Unauthenticated("identity token groups claim must be a list of strings")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub.strip():
        raise Unauthenticated("identity token sub claim must be a non-empty string")
    # A second factor (amr/acr), for the policies' step-up rules: never a default of True.
    return Actor(sub=sub, groups=groups, mfa=mfa_from_claims(claims))


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
        if len(token) > _MAX_TOKEN_CHARS:
            raise Unauthenticated("identity token is too long")
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
            raise Unauthenticated("identity token is malformed: expected a signed JWT") from e
        try:
            if self._dev_key is not None and issuer == dev_identity.ISSUER:
                claims = self._decode(token, self._dev_key, [dev_identity.ALGORITHM], issuer, dev_identity.AUDIENCE)
                groups_claim = "groups"
            elif self._jwks is not None and issuer == self._settings.oidc_issuer:
                # The PyJWK binds the algorithm to the key: an RSA key verifies RS256 only,
                # whatever "alg" the token claims (no HS256-with-the-public-key confusion).
                key = self._oidc_key(token)
                claims = self._decode(token, key, self._settings.oidc_algorithms, issuer, self._settings.oidc_audience)
                groups_claim = self._settings.oidc_groups_claim
            elif issuer == dev_identity.ISSUER:
                raise Unauthenticated("development identity tokens are not accepted here (dev identity is off)")
            else:
                raise Unauthenticated("identity token is from an issuer this service does not trust")
        except jwt.PyJWTError as e:
            log.info("identity token rejected: %s: %s", type(e).__name__, e)
            raise Unauthenticated(_reason(e)) from e
        return actor_from_claims(claims, groups_claim), float(claims["exp"])

    def _oidc_key(self, token: str) -> jwt.PyJWK:
        assert self._jwks is not None
        try:
            return self._jwks.get_signing_key_from_jwt(token)
        except (jwt.PyJWKClientConnectionError, jwt.PyJWKSetError, ValueError, OSError) as e:
            # Unreachable, or answering with something that is not a JWKS (an HTML page
            # parses as a JSONDecodeError, a ValueError): the provider's fault, not the caller's.
            log.warning("cannot get the identity provider's keys: %s: %s", type(e).__name__, e)
            raise IdentityProviderUnavailable(
                "the identity provider's keys cannot be fetched; try again shortly"
            ) from e

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
