"""The development identity issuer: ``jit dev-token alice --group engineers``.

Tokens are signed with a key in the data dir. The API accepts them only when
``JIT_DEV_IDENTITY=1`` (``make run`` sets it); production uses OIDC.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt

from core.keys import SigningKey, load_or_create_single
from core.settings import Settings

ISSUER = "jit-dev"
AUDIENCE = "jit-access"
ALGORITHM = "EdDSA"


def dev_key(settings: Settings) -> SigningKey:
    return load_or_create_single(settings.dev_identity_key_path)


def mint_dev_token(
    settings: Settings,
    user: str,
    groups: list[str],
    ttl: timedelta = timedelta(hours=12),
    amr: list[str] | None = None,
) -> str:
    """``amr`` (RFC 8176 methods, e.g. ``["mfa"]``) says how the user signed in: the
    policies see ``context.mfa`` when it names a second factor (policy.mfa_from_claims)."""
    key = dev_key(settings)
    now = datetime.now(UTC)
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": user,
        "groups": groups,
        "iat": int(now.timestamp()),
        "exp": int((now + ttl).timestamp()),
    }
    if amr:
        claims["amr"] = list(amr)
    return jwt.encode(claims, key.private, algorithm=ALGORITHM, headers={"kid": key.kid})
