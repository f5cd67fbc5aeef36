"""One trusted issuer's public keys: found by OIDC discovery, cached, refreshed on an unknown kid.

A key set is fetched when first needed and again after ``jwks_cache_s``. A token
whose kid is not in the set (the provider rotated its keys) fetches it again at
once, but at most once per ``jwks_refresh_min_s``: a flood of tokens with random
kids costs the provider one request, not one each. When a fetch fails the keys
already known are kept; with none known, callers get IdentityProviderUnavailable
(503), and the provider is not asked again for ``_RETRY_AFTER_FAILURE_S``.

Called from the API's thread pool (api/identity.py), several threads at once: one
lock, so concurrent misses make one fetch.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import httpx
import jwt

from core.oidc_issuers import OidcIssuer

log = logging.getLogger("jit.api.identity")

_TIMEOUT_S = 5.0
_RETRY_AFTER_FAILURE_S = 5.0
_MAX_DOCUMENT_BYTES = 512 * 1024


class KeysUnavailable(Exception):
    """The issuer's discovery document or key set cannot be had: not the caller's fault."""


class UnknownKey(Exception):
    """The token's kid is not among the issuer's keys, even after a refresh (or one was too recent)."""


class IssuerKeys:
    def __init__(self, issuer: OidcIssuer):
        self.issuer = issuer
        self._lock = threading.Lock()
        self._jwks_url = issuer.jwks_url
        self._keys: dict[str | None, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")  # monotonic
        self._refreshed_at = float("-inf")  # the last refresh an unknown kid made
        self._failed_at = float("-inf")
        self.fetches = 0  # successful key-set fetches, for the metrics and the tests

    def key_for(self, kid: str | None) -> jwt.PyJWK:
        with self._lock:
            now = time.monotonic()
            if not self._keys or now - self._fetched_at >= self.issuer.jwks_cache_s:
                self._fetch(now)
            key = self._find(kid)
            if key is None and kid is not None and self._may_refresh(now):
                self._fetch(now, after_miss=True)
                key = self._find(kid)
        if key is None:
            raise UnknownKey(kid)
        return key

    def newer_key(self, tried: jwt.PyJWK) -> jwt.PyJWK | None:
        """A token without a kid did not verify with the issuer's one key: perhaps it rotated.
        The key now published, if the keys could be fetched again (rate-limited) and it changed."""
        with self._lock:
            now = time.monotonic()
            if not self._may_refresh(now):
                return None
            self._fetch(now, after_miss=True)
            key = self._find(None)
        return key if key is not None and key.key_id != tried.key_id else None

    def _may_refresh(self, now: float) -> bool:
        if now - self._refreshed_at < self.issuer.jwks_refresh_min_s:
            return False
        self._refreshed_at = now
        return True

    def _find(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is None:
            # No kid: acceptable only when the issuer publishes one key, so there is no choice to make.
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid)

    def _fetch(self, now: float, after_miss: bool = False) -> None:
        if now - self._failed_at < _RETRY_AFTER_FAILURE_S and not after_miss:
            if self._keys:
                return
            raise KeysUnavailable(self._unavailable())
        try:
            if self._jwks_url is None:
                self._jwks_url = self._discover()
            keys = _key_set(_get_json(self._jwks_url))
        except (httpx.HTTPError, ValueError, jwt.PyJWTError) as e:
            self._failed_at = now
            log.warning("cannot get the keys of OIDC issuer %s: %s: %s", self.issuer.issuer, type(e).__name__, e)
            if self.issuer.jwks_url is None:
                self._jwks_url = None  # discover again next time: the jwks_uri may have moved
            if self._keys:
                return  # keep verifying with the keys already known
            raise KeysUnavailable(self._unavailable()) from e
        self._keys, self._fetched_at = keys, now
        self.fetches += 1
        log.info("fetched %d keys of OIDC issuer %s", len(keys), self.issuer.issuer)

    def _discover(self) -> str:
        document = _get_json(self.issuer.discovery_url)
        # OIDC Discovery 1.0 §4.3: the document's issuer must be exactly the one configured.
        if not isinstance(document, dict) or document.get("issuer") != self.issuer.issuer:
            raise ValueError("discovery document names another issuer")
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not jwks_uri.startswith(("https://", "http://")):
            raise ValueError("discovery document has no http(s) jwks_uri")
        return jwks_uri

    def _unavailable(self) -> str:
        return f"the keys of identity provider {self.issuer.issuer} cannot be fetched; try again shortly"


def _get_json(url: str) -> Any:
    # No redirects: a key set is where the provider says it is.
    response = httpx.get(url, timeout=_TIMEOUT_S, headers={"Accept": "application/json"})
    response.raise_for_status()
    if len(response.content) > _MAX_DOCUMENT_BYTES:
        raise ValueError(f"{url} answered more than {_MAX_DOCUMENT_BYTES} bytes")
    return response.json()  # a ValueError when it is not JSON (an HTML error page)


def _key_set(data: Any) -> dict[str | None, jwt.PyJWK]:
    if not isinstance(data, dict):
        raise ValueError("the key set is not a JSON object")
    # PyJWKSet skips keys it cannot use (an unknown kty), and raises when none is left.
    found = jwt.PyJWKSet.from_dict(data).keys
    return {k.key_id: k for k in found if k.public_key_use in (None, "sig")}
