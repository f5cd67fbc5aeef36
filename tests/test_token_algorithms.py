"""Access tokens every resource server can check: the signing algorithm, mixed key sets, rotation.

The default algorithm is the one that the resource-server libraries in
tests/resource_servers.py accept in their default configuration (RS256: authlib's
RFC 9068 validator and joserfc refuse EdDSA as "not recommended", PyJWT's
documented example pins RS256).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest

from core.access_tokens import InvalidAccessToken, mint, verify
from core.grants import GrantRow
from core.keys import ALGORITHMS, KeyRing, SigningKey, SigningKeyError, generate, write_key
from core.settings import Settings
from tests.conftest import Stack
from tests.resource_servers import CHECKS, jwks_url, outcome

ORDERS = "postgres:orders/public.orders"
ISSUER = "https://jit.example.com"


def grant() -> GrantRow:
    now = datetime.now(UTC)
    return GrantRow(
        "3f0c9a1e-0000-4000-8000-000000000001", "alice", ORDERS, "read", now, now + timedelta(hours=1), None
    )


def ring_of(*keys: SigningKey, active: SigningKey | None = None) -> KeyRing:
    return KeyRing(list(keys), active_kid=active.kid if active else None)


async def test_tokens_from_the_api_pass_every_resource_server_library(stack: Stack) -> None:
    assert Settings.model_fields["token_algorithm"].default == "RS256"
    body = {"resource": "k8s:prod/logs", "action": "read", "duration": "PT15M", "reason": "INC-7"}
    alice = stack.auth("alice", "engineers")
    created = await stack.http.post("/v1/requests", json=body, headers=alice)
    assert created.json()["status"] == "active", created.text
    token = (await stack.http.get(f"/v1/requests/{created.json()['id']}/credentials", headers=alice)).json()
    jwks = (await stack.http.get("/.well-known/jwks.json")).json()
    assert jwt.get_unverified_header(token["access_token"])["alg"] == "RS256"
    refusals = {
        name: outcome(check, token["access_token"], jwks, stack.settings.token_issuer, "k8s:prod/logs")
        for name, check in CHECKS.items()
    }
    assert refusals == dict.fromkeys(CHECKS)


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_each_algorithm_signs_and_verifies_with_its_own_key_only(alg: str) -> None:
    key = SigningKey.of(generate(alg))  # type: ignore[arg-type]
    ring = ring_of(key)
    token, _ = mint(ring, grant(), issuer=ISSUER, ttl_s=300)
    assert jwt.get_unverified_header(token)["alg"] == alg
    assert verify(ring, token, issuer=ISSUER)["sub"] == "alice"
    assert ring.jwks()["keys"][0]["alg"] == alg
    # A resource server that takes each key's algorithm from the JWKS accepts every one of them.
    with jwks_url(ring.jwks()) as url:
        found = jwt.PyJWKClient(url).get_signing_key_from_jwt(token)
        assert (
            jwt.decode(token, found.key, algorithms=[found.algorithm_name], audience=ORDERS)["jti"]
            == grant().request_id
        )


def test_a_header_naming_another_algorithm_is_refused() -> None:
    """The key decides the algorithm: a token whose header says HS256 (keyed with the public key) is refused."""
    key = SigningKey.of(generate("RS256"))
    ring = ring_of(key)
    claims = {"iss": ISSUER, "sub": "mallory", "aud": ORDERS, "jti": "x", "iat": 0, "nbf": 0, "exp": 2**31}
    public_pem = key.jwk()["n"].encode()
    forged = jwt.encode(claims, public_pem, algorithm="HS256", headers={"kid": key.kid, "typ": "at+jwt"})
    with pytest.raises(InvalidAccessToken):
        verify(ring, forged, issuer=ISSUER)


def test_migrating_algorithms_publishes_both_and_verifies_old_tokens() -> None:
    old, new = SigningKey.of(generate("EdDSA")), SigningKey.of(generate("RS256"))
    before = ring_of(old)
    old_token, _ = mint(before, grant(), issuer=ISSUER, ttl_s=300)
    during = KeyRing([old, new], algorithm="RS256")  # JIT_TOKEN_ALGORITHM=RS256: the RS256 key signs
    assert during.active is new
    assert {k["alg"] for k in during.jwks()["keys"]} == {"EdDSA", "RS256"}
    assert verify(during, old_token, issuer=ISSUER)["sub"] == "alice"
    new_token, _ = mint(during, grant(), issuer=ISSUER, ttl_s=300)
    assert jwt.get_unverified_header(new_token)["alg"] == "RS256"


def test_rotation_without_a_single_failed_verification(tmp_path: Path) -> None:
    """The documented rotation, with a resource server caching the JWKS between steps.

    1. publish the new key (it does not sign yet); 2. after the JWKS cache lifetime, sign with
    it; 3. after the longest token lifetime, remove the old one.
    """
    secret = tmp_path / "signing-keys"  # a mounted secret: the operator writes, the API only reads
    secret.mkdir()
    a = SigningKey.of(generate("RS256"))
    write_key(secret, a)
    issued: list[str] = []
    cached_jwks = KeyRing.from_directory(secret).jwks()  # what resource servers hold

    def api(active: SigningKey) -> KeyRing:
        ring = KeyRing.from_directory(secret, active_kid=active.kid)
        issued.append(mint(ring, grant(), issuer=ISSUER, ttl_s=300)[0])
        return ring

    api(a)
    b = SigningKey.of(generate("RS256"))
    write_key(secret, b)  # step 1: published, A still signs
    assert api(a).jwks()["keys"][0]["kid"] == a.kid
    cached_jwks = KeyRing.from_directory(secret, active_kid=a.kid).jwks()  # the cache refreshes
    api(b)  # step 2: B signs
    for f in secret.glob(f"*-{a.kid}.pem"):  # step 3
        f.unlink()
    final = api(b)
    # Every token, checked by every library against the key set it cached after step 1; B's also by the API at the end.
    failures = [outcome(c, token, cached_jwks, ISSUER, ORDERS) for token in issued for c in CHECKS.values()]
    for token in issued:
        if jwt.get_unverified_header(token)["kid"] == b.kid:
            verify(final, token, issuer=ISSUER)
    assert [f for f in failures if f] == []


def test_a_bad_key_is_named_without_its_contents(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    weak = SigningKey(kid="x", private=ec.generate_private_key(ec.SECP384R1()), alg="ES256")
    with pytest.raises(SigningKeyError, match="P-256"):
        KeyRing.from_pem(weak.pem().decode())
    with pytest.raises(SigningKeyError, match="names none of the signing keys"):
        KeyRing.from_pem(SigningKey.of(generate("RS256")).pem().decode(), active_kid="nope")
    with pytest.raises(SigningKeyError) as refused:
        KeyRing.from_pem("-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n")
    assert "c2VjcmV0" not in str(refused.value)


def test_given_keys_follow_the_algorithm_setting_only_when_it_is_set(tmp_path: Path) -> None:
    from core.keys import load_key_ring

    ed = SigningKey.of(generate("EdDSA"))
    unset = Settings(_env_file=None, data_dir=tmp_path, signing_key_pem=ed.pem().decode())  # type: ignore[call-arg]
    assert load_key_ring(unset).active.kid == ed.kid  # a key from before the setting keeps signing
    explicit = unset.model_copy(update={"token_algorithm": "RS256"})
    explicit.model_fields_set.add("token_algorithm")
    with pytest.raises(SigningKeyError, match="no RS256 key"):
        load_key_ring(explicit)
    # The data dir's own keys: a key of the setting's algorithm is made when none is.
    made = load_key_ring(Settings(_env_file=None, data_dir=tmp_path))  # type: ignore[call-arg]
    assert made.active.alg == "RS256"
