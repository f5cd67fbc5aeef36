"""Who is calling: verify the ``Authorization: Bearer`` identity token.

The trusted OIDC issuers (core/oidc_issuers.py: people's providers and CI systems'
for workloads, each with its audience, algorithms and claim mapping; keys by
discovery, api/issuer_keys.py) and, only when switched on, the dev issuer. A
token is matched to its issuer by ``iss``; algorithms are pinned per issuer;
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

from api.issuer_keys import IssuerKeys, KeysUnavailable, UnknownKey
from core import dev_identity
from core.models import Actor
from core.oidc_issuers import ClaimMapping
from core.settings import Settings
from policy import mfa_from_claims
from policy.context import MFA_ACR, SERVICE_ID

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


def actor_from_claims(claims: dict[str, Any], mapping: str | ClaimMapping) -> Actor:
    """The caller a verified token's claims name: the REST API's bearer tokens and the web
    page's ID tokens (api/ui/auth.py) alike, so a policy decides the same either way.
    ``mapping``: the issuer's claim mapping, or just a groups claim (a person's token)."""
    if isinstance(mapping, str):
        mapping = ClaimMapping(groups_claim=mapping)
    groups = claims.get(mapping.groups_claim, []) if mapping.groups_claim else []
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise Unauthenticated(f"identity token {mapping.groups_claim} claim must be a list of strings")
    groups = list(dict.fromkeys([*groups, *mapping.groups]))
    sub = claims.get(mapping.subject_claim)
    if not isinstance(sub, str) or not sub.strip():
        raise Unauthenticated(f"identity token {mapping.subject_claim} claim must be a non-empty string")
    if mapping.kind == "person":
        # A second factor (amr/acr), for the policies' step-up rules: never a default of True.
        acr_values = MFA_ACR if mapping.mfa_acr_values is None else mapping.mfa_acr_values
        return Actor(sub=sub, groups=groups, mfa=mfa_from_claims(claims, acr_values))
    if sub == SERVICE_ID:  # Jit::Service::"jit-access" is this service, the resource of audit and introspect
        raise Unauthenticated(f"identity token {mapping.subject_claim} claim names this service")
    attributes = {"issuer": str(claims["iss"])}
    for name, claim in mapping.attributes.items():
        value = claims.get(claim)
        if isinstance(value, bool):
            attributes[name] = "true" if value else "false"
        elif isinstance(value, str | int):
            attributes[name] = str(value)
        elif value is not None:
            raise Unauthenticated(f"identity token {claim} claim must be a string")
    return Actor(sub=sub, groups=groups, kind="service", attributes=attributes)


class IdentityVerifier:
    def __init__(self, settings: Settings):
        self._settings = settings
        self._dev_key = dev_identity.dev_key(settings).public if settings.dev_identity else None
        self.issuers = {entry.issuer: IssuerKeys(entry) for entry in settings.trusted_issuers}
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
                mapping: str | ClaimMapping = "groups"
            elif isinstance(issuer, str) and issuer in self.issuers:
                # The PyJWK binds the algorithm to the key: an RSA key verifies RS256 only,
                # whatever "alg" the token claims (no HS256-with-the-public-key confusion).
                keys = self.issuers[issuer]
                claims = self._decode_oidc(keys, token)
                mapping = keys.issuer
            elif issuer == dev_identity.ISSUER:
                raise Unauthenticated("development identity tokens are not accepted here (dev identity is off)")
            else:
                raise Unauthenticated("identity token is from an issuer this service does not trust")
        except jwt.PyJWTError as e:
            log.info("identity token rejected: %s: %s", type(e).__name__, e)
            raise Unauthenticated(_reason(e)) from e
        return actor_from_claims(claims, mapping), float(claims["exp"])

    def _decode_oidc(self, keys: IssuerKeys, token: str) -> dict[str, Any]:
        entry = keys.issuer
        kid = jwt.get_unverified_header(token).get("kid")
        if kid is not None and not isinstance(kid, str):
            raise Unauthenticated("identity token is malformed: its kid must be a string")
        try:
            key = keys.key_for(kid)
            try:
                return self._decode(token, key, entry.algorithms, entry.issuer, entry.audience)
            except jwt.InvalidSignatureError:
                # Without a kid a rotation shows only as a signature that no longer verifies.
                newer = keys.newer_key(key) if kid is None else None
                if newer is None:
                    raise
                return self._decode(token, newer, entry.algorithms, entry.issuer, entry.audience)
        except KeysUnavailable as e:
            # Unreachable, or answering with something that is not a discovery document or a
            # JWKS: the provider's fault, not the caller's. The message names the issuer.
            raise IdentityProviderUnavailable(str(e)) from e
        except UnknownKey as e:
            raise Unauthenticated("identity token is signed with a key the identity provider does not publish") from e

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
