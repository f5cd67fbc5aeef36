"""How resource servers check our access tokens, with libraries no one on this project wrote.

Each check is written the way the library's documentation shows a resource
server doing it, in the library's default configuration, and raises when the
library refuses the token. Used by tests/test_token_algorithms.py and by
bench/jwt_bench.py (the "Token algorithms" table of docs/benchmarks.md).
"""

from __future__ import annotations

import json
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from authlib.oauth2.rfc9068 import JWTBearerTokenValidator
from joserfc import jwt as jose_jwt
from joserfc.jwk import KeySet

Check = Callable[[str, dict[str, Any], str, str], None]


def authlib_rfc9068(token: str, jwks: dict[str, Any], issuer: str, audience: str) -> None:
    """authlib's RFC 9068 validator (``authlib.oauth2.rfc9068``), as its docstring sets it up."""

    class Validator(JWTBearerTokenValidator):  # type: ignore[misc]
        def get_jwks(self) -> KeySet:
            return KeySet.import_key_set(jwks)  # what authlib 1.9 asks for (a plain dict is deprecated)

    validator = Validator(issuer=issuer, resource_server=audience)
    claims = validator.authenticate_token(token)
    validator.validate_token(claims, scopes=None, request=None)


def joserfc_default(token: str, jwks: dict[str, Any], issuer: str, audience: str) -> None:
    """joserfc's ``jwt.decode`` with the published key set and no algorithm list (its default)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a "deprecated algorithm" warning counts as a refusal
        decoded = jose_jwt.decode(token, KeySet.import_key_set(jwks))
    jose_jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": issuer}, aud={"essential": True, "value": audience}
    ).validate(decoded.claims)


@contextmanager
def jwks_url(jwks: dict[str, Any]) -> Iterator[str]:
    """The key set on a local URL, as an API publishes it at /.well-known/jwks.json."""
    body = json.dumps(jwks).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    finally:
        server.shutdown()


def pyjwt_pyjwkclient(token: str, jwks: dict[str, Any], issuer: str, audience: str) -> None:
    """PyJWT's ``PyJWKClient`` as its documentation's example: the key by kid, ``algorithms=["RS256"]``."""
    with jwks_url(jwks) as url:
        key = jwt.PyJWKClient(url).get_signing_key_from_jwt(token)
        jwt.decode(token, key.key, algorithms=["RS256"], audience=audience, issuer=issuer)


CHECKS: dict[str, Check] = {
    "authlib RFC 9068 validator": authlib_rfc9068,
    "joserfc jwt.decode (default)": joserfc_default,
    "PyJWT PyJWKClient (documented example)": pyjwt_pyjwkclient,
}


def outcome(check: Check, token: str, jwks: dict[str, Any], issuer: str, audience: str) -> str | None:
    """None when the library accepts the token, else its refusal in a few words."""
    try:
        check(token, jwks, issuer, audience)
    except Exception as e:  # noqa: BLE001 - any refusal, whatever the library raises
        cause = e.__cause__ or e  # authlib wraps the reason in a generic invalid_token
        return f"{type(cause).__name__}: {cause}"[:120]
    return None
