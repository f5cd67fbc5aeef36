"""Who is calling: every bad identity is a 401 in the error shape that never echoes the token.

The dev issuer is tested against the ``stack`` fixture; OIDC against a real
identity provider stand-in: an ``http.server`` in a thread serving a JWKS with
an RS256 and an ES256 key, and APIs started with ``oidc_*`` settings pointing
at it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError
from temporalio.testing import WorkflowEnvironment

from core import dev_identity
from core.dev_identity import mint_dev_token
from core.settings import Settings
from core.temporal import connect
from tests.conftest import EXAMPLE_CATALOG, EXAMPLE_POLICIES, Stack, free_port, make_settings, serve_api
from worker import build_worker

ORDERS = "postgres:orders/public.orders"
REQUEST = {"resource": ORDERS, "action": "read", "duration": "PT15M", "reason": "debugging INC-1"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_jwt(header: dict[str, Any], claims: dict[str, Any], sign: Any = None) -> str:
    """Build a JWT by hand, for the tokens PyJWT refuses to make (alg none, HS256 with a PEM)."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = sign(signing_input.encode()) if sign else b""
    return f"{signing_input}.{_b64(signature)}"


def assert_unauthenticated(response: httpx.Response, token: str | None, says: str) -> dict[str, Any]:
    assert response.status_code == 401, response.text
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert error["code"] == "unauthenticated"
    assert set(error) <= {"code", "message"}
    assert says.lower() in error["message"].lower(), error
    assert response.headers["www-authenticate"].startswith("Bearer")
    if token:
        # Neither the token nor any of its parts comes back, in the body or a header.
        echoed = response.text + json.dumps(dict(response.headers))
        for part in [token, *token.split(".")]:
            if len(part) >= 8:
                assert part not in echoed, f"response echoes the token: {error}"
    return error


def dev_claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": dev_identity.ISSUER,
        "aud": dev_identity.AUDIENCE,
        "sub": "alice",
        "groups": ["engineers"],
        "iat": now,
        "exp": now + 3600,
    }
    for name, value in overrides.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


def signed_by_dev_key(settings: Settings, claims: dict[str, Any]) -> str:
    key = dev_identity.dev_key(settings)
    return jwt.encode(claims, key.private, algorithm="EdDSA", headers={"kid": key.kid})


# -- the dev issuer ---------------------------------------------------------------------------------


async def test_missing_or_unusable_authorization_header(stack: Stack) -> None:
    cases: list[tuple[dict[str, str], str]] = [
        ({}, "missing identity"),
        ({"Authorization": ""}, "missing identity"),
        ({"Authorization": "Bearer"}, "missing identity"),
        ({"Authorization": "Basic YWxpY2U6c2VjcmV0cGFzc3dvcmQ="}, "unsupported Authorization scheme"),
        ({"Authorization": "Token abcdefgh12345678"}, "unsupported Authorization scheme"),
        ({"Authorization": f"Token{stack.token('alice')}"}, "unsupported Authorization scheme"),
    ]
    for headers, says in cases:
        response = await stack.http.get("/v1/catalog", headers=headers)
        value = headers.get("Authorization", "")
        credential = value.partition(" ")[2] or value
        assert_unauthenticated(response, credential.strip() or None, says)


def _dev_bad_tokens(settings: Settings) -> list[tuple[str, str, str]]:
    """(case, token, what the message says) for tokens the dev issuer must refuse."""
    key = dev_identity.dev_key(settings)
    public_raw = key.public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    public_pem = key.public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    other_key = Ed25519PrivateKey.generate()
    return [
        ("garbage", "gArBaGe-n0t-a-t0ken", "malformed"),
        ("three-garbage-parts", "aaaaaaaaaa.bbbbbbbbbb.cccccccccc", "malformed"),
        ("alg-none", raw_jwt({"alg": "none", "typ": "JWT"}, dev_claims()), "algorithm"),
        ("alg-none-with-kid", raw_jwt({"alg": "none", "kid": key.kid}, dev_claims()), "algorithm"),
        (
            "another-ed25519-key",
            jwt.encode(dev_claims(), other_key, algorithm="EdDSA", headers={"kid": key.kid}),
            "signature",
        ),
        (
            "hs256-with-the-public-key",
            raw_jwt(
                {"alg": "HS256", "kid": key.kid},
                dev_claims(),
                lambda m: hmac.new(public_raw, m, hashlib.sha256).digest(),
            ),
            "algorithm",
        ),
        (
            "hs256-with-the-public-pem",
            raw_jwt({"alg": "HS256"}, dev_claims(), lambda m: hmac.new(public_pem, m, hashlib.sha256).digest()),
            "algorithm",
        ),
        ("tampered-claims", _tamper(signed_by_dev_key(settings, dev_claims()), groups=["jit-admins"]), "signature"),
        ("expired", mint_dev_token(settings, "alice", ["engineers"], ttl=timedelta(minutes=-5)), "expired"),
        ("wrong-audience", signed_by_dev_key(settings, dev_claims(aud="some-other-app")), "audience"),
        ("no-audience", signed_by_dev_key(settings, dev_claims(aud=None)), "'aud'"),
        ("no-exp", signed_by_dev_key(settings, dev_claims(exp=None)), "'exp'"),
        ("no-sub", signed_by_dev_key(settings, dev_claims(sub=None)), "'sub'"),
        ("no-iat", signed_by_dev_key(settings, dev_claims(iat=None)), "'iat'"),
        ("future-iat", signed_by_dev_key(settings, dev_claims(iat=int(time.time()) + 3600)), "not valid yet"),
        ("not-before", signed_by_dev_key(settings, dev_claims(nbf=int(time.time()) + 3600)), "not valid yet"),
        ("empty-sub", signed_by_dev_key(settings, dev_claims(sub=" ")), "sub"),
        ("groups-not-a-list", signed_by_dev_key(settings, dev_claims(groups="jit-admins")), "groups"),
        ("groups-not-strings", signed_by_dev_key(settings, dev_claims(groups=[1, 2])), "groups"),
        ("unknown-issuer", signed_by_dev_key(settings, dev_claims(iss="https://evil.example")), "does not trust"),
        ("no-issuer", signed_by_dev_key(settings, dev_claims(iss=None)), "does not trust"),
        ("huge", "a" * 20_000, "too long"),
    ]


def _tamper(token: str, **claims: Any) -> str:
    header, payload, signature = token.split(".")
    decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return ".".join([header, _b64(json.dumps({**decoded, **claims}).encode()), signature])


async def test_bad_dev_tokens_are_401(stack: Stack) -> None:
    for case, token, says in _dev_bad_tokens(stack.settings):
        response = await stack.http.get("/v1/catalog", headers={"Authorization": f"Bearer {token}"})
        try:
            assert_unauthenticated(response, token, says)
        except AssertionError as e:
            raise AssertionError(f"case {case}: {e}") from e
    # And the good one still works: the cases above were refused for their flaw alone.
    assert (await stack.http.get("/v1/catalog", headers=stack.auth("alice", "engineers"))).status_code == 200


async def test_bad_tokens_change_nothing(stack: Stack) -> None:
    forged = _tamper(stack.token("mallory", "engineers"), sub="alice")
    response = await stack.http.post("/v1/requests", json=REQUEST, headers={"Authorization": f"Bearer {forged}"})
    assert_unauthenticated(response, forged, "signature")
    mine = await stack.http.get("/v1/requests", params={"mine": "true"}, headers=stack.auth("mallory", "engineers"))
    assert mine.json()["items"] == []


async def test_every_route_but_health_and_jwks_needs_identity(stack: Stack) -> None:
    request_id = str(uuid.uuid4())
    for method, path in [
        ("GET", "/v1/catalog"),
        ("GET", "/v1/requests"),
        ("POST", "/v1/requests"),
        ("GET", f"/v1/requests/{request_id}"),
        ("POST", f"/v1/requests/{request_id}/approve"),
        ("POST", f"/v1/requests/{request_id}/deny"),
        ("POST", f"/v1/requests/{request_id}/cancel"),
        ("POST", f"/v1/requests/{request_id}/revoke"),
        ("POST", f"/v1/requests/{request_id}/extend"),
        ("GET", f"/v1/requests/{request_id}/credentials"),
        ("POST", "/v1/introspect"),
    ]:
        response = await stack.http.request(method, path)
        assert_unauthenticated(response, None, "missing identity")
    assert (await stack.http.get("/healthz")).status_code == 200
    assert (await stack.http.get("/.well-known/jwks.json")).status_code == 200


async def test_group_names_that_cannot_be_queried_do_not_break_listing(stack: Stack) -> None:
    """Identity providers hand out groups like "Domain Users": they are ignored for visibility, not a 422."""
    user = f"u-{uuid.uuid4().hex[:12]}"
    created = await stack.http.post("/v1/requests", json=REQUEST, headers=stack.auth(user, "engineers"))
    assert created.status_code == 201, created.text
    bob = stack.auth("bob", "Domain Users", "db-owners", "x' OR '1'='1")
    for params in [{}, {"to_approve": "true"}, {"mine": "true"}]:
        response = await stack.http.get("/v1/requests", params=params, headers=bob)
        assert response.status_code == 200, (params, response.text)
    assert (await stack.http.get(f"/v1/requests/{created.json()['id']}", headers=bob)).status_code == 200
    only_odd = await stack.http.get(
        "/v1/requests", params={"to_approve": "true"}, headers=stack.auth("dan", "Domain Users")
    )
    assert only_odd.json()["items"] == []


async def test_dev_token_refused_when_dev_identity_is_off(stack: Stack, tmp_path: Path) -> None:
    settings = make_settings(stack.client, stack.settings.data_dir, dev_identity=False)
    server, task, base_url = await serve_api(settings)
    try:
        async with httpx.AsyncClient(base_url=base_url) as http:
            token = stack.token("alice", "engineers")  # signed with the very key in this data dir
            response = await http.get("/v1/catalog", headers={"Authorization": f"Bearer {token}"})
            assert_unauthenticated(response, token, "dev identity is off")
    finally:
        server.should_exit = True
        await task


# -- settings ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"oidc_issuer": "https://idp.example"}, "JIT_OIDC_AUDIENCE, JIT_OIDC_JWKS_URL not set"),
        ({"oidc_issuer": "https://idp.example", "oidc_audience": "jit"}, "JIT_OIDC_JWKS_URL not set"),
        (
            {"oidc_issuer": "https://idp.example", "oidc_jwks_url": "https://idp.example/jwks"},
            "JIT_OIDC_AUDIENCE not set",
        ),
        ({"oidc_audience": "jit", "oidc_jwks_url": "https://idp.example/jwks"}, "JIT_OIDC_ISSUER not set"),
        (
            {"oidc_issuer": "https://i", "oidc_audience": "jit", "oidc_jwks_url": "file:///etc/passwd"},
            "must be an http(s) URL",
        ),
        ({"oidc_algorithms": ["RS256", "HS256"]}, "refused: HS256"),
        ({"oidc_algorithms": ["none"]}, "refused: none"),
        ({"oidc_algorithms": []}, "an empty list"),
        ({"oidc_groups_claim": " "}, "JIT_OIDC_GROUPS_CLAIM"),
    ],
)
def test_settings_refuse_unsafe_oidc_config(values: dict[str, Any], says: str) -> None:
    with pytest.raises(ValidationError) as raised:
        Settings(_env_file=None, **values)  # type: ignore[call-arg]
    assert says in str(raised.value)


def test_settings_errors_do_not_print_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JIT_SIGNING_KEY_PEM", "-----BEGIN PRIVATE KEY-----TOPSECRET")
    monkeypatch.setenv("JIT_OIDC_ISSUER", "https://idp.example")
    with pytest.raises(ValidationError) as raised:
        Settings(_env_file=None)  # type: ignore[call-arg]
    assert "TOPSECRET" not in str(raised.value)
    monkeypatch.delenv("JIT_OIDC_ISSUER")
    assert "TOPSECRET" not in repr(Settings(_env_file=None))  # type: ignore[call-arg]


# -- OIDC ---------------------------------------------------------------------------------------------


@dataclass
class IdentityProvider:
    """A JWKS endpoint on a real socket, with one RSA and one EC P-256 key."""

    issuer: str
    jwks_url: str
    audience: str
    rsa_key: rsa.RSAPrivateKey
    ec_key: ec.EllipticCurvePrivateKey
    rsa_kid: str = "rsa-1"
    ec_kid: str = "ec-1"

    def claims(
        self, sub: str, groups: list[str] | None = None, *, claim: str = "groups", **overrides: Any
    ) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {"iss": self.issuer, "aud": self.audience, "sub": sub, "iat": now, "exp": now + 600}
        if groups is not None:
            claims[claim] = groups
        for name, value in overrides.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        return claims

    def rs256(self, claims: dict[str, Any], kid: str | None = None) -> str:
        return jwt.encode(claims, self.rsa_key, algorithm="RS256", headers={"kid": kid or self.rsa_kid})

    def es256(self, claims: dict[str, Any], kid: str | None = None) -> str:
        return jwt.encode(claims, self.ec_key, algorithm="ES256", headers={"kid": kid or self.ec_kid})

    def token(self, sub: str, *groups: str) -> str:
        return self.rs256(self.claims(sub, list(groups)))

    def auth(self, sub: str, *groups: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(sub, *groups)}"}

    def rsa_public_pem(self) -> bytes:
        return self.rsa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


@pytest.fixture(scope="module")
def idp() -> Iterator[IdentityProvider]:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    rsa_jwk = {
        **jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key(), as_dict=True),
        "kid": "rsa-1",
        "alg": "RS256",
        "use": "sig",
    }
    ec_jwk = {
        **jwt.algorithms.ECAlgorithm.to_jwk(ec_key.public_key(), as_dict=True),
        "kid": "ec-1",
        "alg": "ES256",
        "use": "sig",
    }
    jwks = json.dumps({"keys": [rsa_jwk, ec_jwk]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            # /jwks.json is the real thing; the others are a provider misbehaving.
            bodies = {
                "/jwks.json": (jwks, "application/json"),
                "/login.html": (b"<html>please log in</html>", "text/html"),
                "/empty.json": (b'{"keys": []}', "application/json"),
            }
            if self.path not in bodies:
                self.send_error(404)
                return
            body, content_type = bodies[self.path]
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield IdentityProvider(
            issuer=f"{base}/realms/test",
            jwks_url=f"{base}/jwks.json",
            audience="jit-api",
            rsa_key=rsa_key,
            ec_key=ec_key,
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def oidc_settings(client: Any, data_dir: Path, idp: IdentityProvider, **overrides: Any) -> Settings:
    values = {
        "dev_identity": False,
        "oidc_issuer": idp.issuer,
        "oidc_audience": idp.audience,
        "oidc_jwks_url": idp.jwks_url,
        **overrides,
    }
    return make_settings(client, data_dir, **values)


@dataclass
class OidcStack:
    settings: Settings
    http: httpx.AsyncClient


@pytest.fixture
async def oidc_stack(dev_env: WorkflowEnvironment, tmp_path: Path, idp: IdentityProvider) -> AsyncIterator[OidcStack]:
    """Worker and API like ``stack``, but callers are identified by the OIDC provider only."""
    settings = oidc_settings(dev_env.client, tmp_path / "data", idp)
    client = await connect(settings)
    with ThreadPoolExecutor(max_workers=8) as executor:
        async with build_worker(client, settings, executor):
            server, task, base_url = await serve_api(settings)
            try:
                async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
                    yield OidcStack(settings, http)
            finally:
                server.should_exit = True
                await task


async def test_oidc_rs256_token_authenticates_and_groups_count(oidc_stack: OidcStack, idp: IdentityProvider) -> None:
    http = oidc_stack.http
    assert (await http.get("/v1/catalog", headers=idp.auth("alice", "engineers"))).status_code == 200

    created = await http.post("/v1/requests", json=REQUEST, headers=idp.auth("alice", "engineers"))
    assert created.status_code == 201, created.text
    assert created.json()["requester"] == "alice"
    request_id = created.json()["id"]

    # Not in db-owners: cannot even see it. In db-owners (from the token's groups): approves.
    outsider = await http.post(f"/v1/requests/{request_id}/approve", json={}, headers=idp.auth("carol", "engineers"))
    assert outsider.status_code == 404, outsider.text
    approved = await http.post(f"/v1/requests/{request_id}/approve", json={}, headers=idp.auth("bob", "db-owners"))
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "active"
    assert [a["approver"] for a in approved.json()["approvals"]] == ["bob"]


async def test_oidc_es256_token_authenticates(oidc_stack: OidcStack, idp: IdentityProvider) -> None:
    token = idp.es256(idp.claims("alice", ["engineers"]))
    response = await oidc_stack.http.get("/v1/catalog", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text


def _oidc_bad_tokens(idp: IdentityProvider) -> list[tuple[str, str, str]]:
    other_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = idp.rsa_public_pem()
    good = idp.claims("alice", ["engineers"])
    hs256 = {"alg": "HS256", "kid": idp.rsa_kid, "typ": "JWT"}
    return [
        ("bad-signature", jwt.encode(good, other_rsa, algorithm="RS256", headers={"kid": idp.rsa_kid}), "signature"),
        ("tampered-groups", _tamper(idp.rs256(good), groups=["jit-admins"]), "signature"),
        (
            "hs256-signed-with-public-pem",
            raw_jwt(hs256, good, lambda m: hmac.new(public_pem, m, hashlib.sha256).digest()),
            "algorithm",
        ),
        (
            "hs256-signed-with-public-pem-no-kid",
            raw_jwt({"alg": "HS256"}, good, lambda m: hmac.new(public_pem, m, hashlib.sha256).digest()),
            "key",
        ),
        ("alg-none", raw_jwt({"alg": "none", "kid": idp.rsa_kid}, good), "algorithm"),
        ("rs256-header-on-the-ec-key", idp.rs256(good, kid=idp.ec_kid), "algorithm"),
        ("es256-header-on-the-rsa-key", idp.es256(good, kid=idp.rsa_kid), "algorithm"),
        ("unknown-kid", idp.rs256(good, kid="rotated-away"), "key"),
        ("wrong-iss", idp.rs256({**good, "iss": idp.issuer + "-other"}), "does not trust"),
        ("wrong-aud", idp.rs256({**good, "aud": "another-app"}), "audience"),
        ("aud-list-without-us", idp.rs256({**good, "aud": ["a", "b"]}), "audience"),
        ("missing-exp", idp.rs256(idp.claims("alice", ["engineers"], exp=None)), "'exp'"),
        ("missing-aud", idp.rs256(idp.claims("alice", ["engineers"], aud=None)), "'aud'"),
        ("expired", idp.rs256(idp.claims("alice", ["engineers"], exp=int(time.time()) - 60)), "expired"),
        ("groups-a-string", idp.rs256({**good, "groups": "db-owners"}), "groups"),
    ]


async def test_bad_oidc_tokens_are_401(oidc_stack: OidcStack, idp: IdentityProvider, stack: Stack) -> None:
    cases = [
        *_oidc_bad_tokens(idp),
        ("dev-token-on-an-oidc-api", stack.token("alice", "engineers"), "dev identity is off"),
    ]
    for case, token, says in cases:
        response = await oidc_stack.http.get("/v1/catalog", headers={"Authorization": f"Bearer {token}"})
        try:
            assert_unauthenticated(response, token, says)
        except AssertionError as e:
            raise AssertionError(f"case {case}: {e}") from e
    # An audience list that includes us is fine.
    ok = idp.rs256({**idp.claims("alice", ["engineers"]), "aud": ["other", idp.audience]})
    assert (await oidc_stack.http.get("/v1/catalog", headers={"Authorization": f"Bearer {ok}"})).status_code == 200


async def test_custom_groups_claim(dev_env: WorkflowEnvironment, tmp_path: Path, idp: IdentityProvider) -> None:
    settings = oidc_settings(dev_env.client, tmp_path / "data", idp, oidc_groups_claim="roles")
    server, task, base_url = await serve_api(settings)
    try:
        async with httpx.AsyncClient(base_url=base_url) as http:
            roles = idp.rs256(idp.claims("orders-db", ["resource-servers"], claim="roles"))
            response = await http.post(
                "/v1/introspect", data={"token": "x"}, headers={"Authorization": f"Bearer {roles}"}
            )
            assert response.status_code == 200, response.text
            assert response.json() == {"active": False}
            # The same groups under the default claim name count for nothing here.
            groups = idp.rs256(idp.claims("orders-db", ["resource-servers"], claim="groups"))
            refused = await http.post(
                "/v1/introspect", data={"token": "x"}, headers={"Authorization": f"Bearer {groups}"}
            )
            assert refused.status_code == 403, refused.text
            assert refused.json()["error"]["code"] == "forbidden"
    finally:
        server.should_exit = True
        await task


@pytest.mark.parametrize(
    "jwks_path",
    [
        pytest.param(None, id="nothing-listens"),
        pytest.param("/missing.json", id="http-404"),
        pytest.param("/login.html", id="html-page"),
        pytest.param("/empty.json", id="no-keys"),
    ],
)
async def test_unusable_jwks_is_503_not_401(
    dev_env: WorkflowEnvironment, tmp_path: Path, idp: IdentityProvider, jwks_path: str | None
) -> None:
    if jwks_path is None:
        url = f"http://127.0.0.1:{free_port()}/jwks.json"  # nothing listens there
    else:
        url = idp.jwks_url.replace("/jwks.json", jwks_path)
    settings = oidc_settings(dev_env.client, tmp_path / "data", idp, oidc_jwks_url=url)
    server, task, base_url = await serve_api(settings)
    try:
        async with httpx.AsyncClient(base_url=base_url) as http:
            token = idp.token("alice", "engineers")
            response = await http.get("/v1/catalog", headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 503, response.text
            assert response.json()["error"]["code"] == "unavailable"
            assert "identity provider" in response.json()["error"]["message"]
            assert token not in response.text
    finally:
        server.should_exit = True
        await task


@pytest.mark.parametrize(
    ("second_factor", "mfa"),
    [
        pytest.param({"amr": ["pwd", "mfa"]}, True, id="amr-mfa"),
        pytest.param({"amr": ["pwd", "otp"]}, True, id="amr-otp"),
        pytest.param({"amr": "hwk"}, True, id="amr-string"),
        pytest.param({"acr": "http://schemas.openid.net/pape/policies/2007/06/multi-factor"}, True, id="acr-pape"),
        pytest.param({"amr": ["pwd"]}, False, id="amr-password-only"),
        pytest.param({"acr": "1"}, False, id="acr-single-factor"),
        pytest.param({}, False, id="none"),
    ],
)
async def test_oidc_second_factor_reaches_the_policies(
    dev_env: WorkflowEnvironment, tmp_path: Path, idp: IdentityProvider, second_factor: dict[str, Any], mfa: bool
) -> None:
    """The example policies let SRE break glass only with MFA: GET /v1/catalog shows whether it counted."""
    settings = oidc_settings(
        dev_env.client, tmp_path / "data", idp, catalog_path=EXAMPLE_CATALOG, policies_dir=EXAMPLE_POLICIES
    )
    server, task, base_url = await serve_api(settings)
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            token = idp.rs256(idp.claims("sam", ["sre"], **second_factor))
            response = await http.get("/v1/catalog", headers={"Authorization": f"Bearer {token}"})
    finally:
        server.should_exit = True
        await task
    assert response.status_code == 200, response.text
    glass = {(v["resource"], a["action"]): a["break_glass_max_s"] for v in response.json() for a in v["actions"]}
    assert (glass.get((ORDERS, "read"), 0) == 3600) is mfa, glass
