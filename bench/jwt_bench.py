"""Offline verification of issued access tokens: PyJWT for EdDSA, ES256 and RS256, beside
cryptography's raw signature checks (the ceiling) and the project's helper.

    .venv/bin/python bench/jwt_bench.py [--seconds 0.7]

One thread. The token is what ``core.access_tokens.mint`` issues (same claims, same
header), signed with each algorithm; the raw rate is ``public_key.verify`` on the
same signing input and signature, nothing parsed.
"""

from __future__ import annotations

import argparse
import base64
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core import access_tokens  # noqa: E402
from core.grants import GrantRow  # noqa: E402
from core.keys import KeyRing  # noqa: E402

ISSUER = "http://localhost:8000"


def rate(fn: Callable[[], object], seconds: float) -> tuple[float, float]:
    """(calls per second, µs per call)."""
    for _ in range(20):
        fn()
    n, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(50):
            fn()
        n += 50
        now = time.perf_counter()
        if now >= deadline:
            break
    per = (now - start) / n
    return 1 / per, per * 1e6


def _b64d(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def run(seconds: float) -> list[dict[str, object]]:
    now = datetime.now(UTC)
    grant = GrantRow("bench-1", "alice", "k8s:prod/logs", "read", now, now + timedelta(hours=1), None)
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        ring = KeyRing.load_or_create(Path(tmp))
        token, _ = access_tokens.mint(ring, grant, issuer=ISSUER, ttl_s=300)
        claims = jwt.decode(token, options={"verify_signature": False})
        header = {k: v for k, v in jwt.get_unverified_header(token).items() if k != "alg"}
        keys = {
            "EdDSA": ed25519.Ed25519PrivateKey.generate(),
            "ES256": ec.generate_private_key(ec.SECP256R1()),
            "RS256": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        }
        options = {"require": ["iss", "sub", "aud", "jti", "exp", "iat", "nbf"], "verify_aud": False}
        for alg, private in keys.items():
            public = private.public_key()
            signed = jwt.encode(claims, private, algorithm=alg, headers=header)
            head, payload, sig_b64 = signed.split(".")
            data, sig = f"{head}.{payload}".encode(), _b64d(sig_b64)
            if alg == "EdDSA":
                raw = lambda public=public, sig=sig, data=data: public.verify(sig, data)  # noqa: E731
            elif alg == "ES256":
                der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
                raw = lambda public=public, der=der, data=data: public.verify(der, data, ec.ECDSA(hashes.SHA256()))  # noqa: E731
            else:
                raw = lambda public=public, sig=sig, data=data: public.verify(  # noqa: E731
                    sig, data, padding.PKCS1v15(), hashes.SHA256()
                )
            pyjwt = lambda public=public, signed=signed, alg=alg: jwt.decode(  # noqa: E731
                signed, public, algorithms=[alg], issuer=ISSUER, options=options
            )
            pyjwt()  # it verifies
            raw_rate, raw_us = rate(raw, seconds)
            jwt_rate, jwt_us = rate(pyjwt, seconds)
            rows.append(
                {
                    "alg": alg,
                    "token_bytes": len(signed),
                    "raw_per_s": raw_rate,
                    "raw_us": raw_us,
                    "pyjwt_per_s": jwt_rate,
                    "pyjwt_us": jwt_us,
                }
            )
        helper_rate, helper_us = rate(lambda: access_tokens.verify(ring, token, issuer=ISSUER), seconds)
        rows.append(
            {"alg": f"{ring.active.alg} (core.access_tokens.verify)", "token_bytes": len(token), "pyjwt_per_s": helper_rate,
             "pyjwt_us": helper_us}
        )  # fmt: skip
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.7)
    args = parser.parse_args()
    for row in run(args.seconds):
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
