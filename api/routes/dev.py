"""``POST /v1/dev/token``: the dev identity issuer, over HTTP, so ``jit`` needs no file of the server.

Mounted only when the dev identity issuer is on (``JIT_DEV_IDENTITY=1``, as
``make run`` sets it): otherwise the path is absent, a 404, and not in the
OpenAPI document (api/app.py).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
from fastapi import APIRouter

from api.deps import SettingsDep
from api.openapi_errors import documented
from api.schemas import DevToken, DevTokenBody
from core.dev_identity import mint_dev_token

router = APIRouter(prefix="/v1/dev", tags=["dev"])


@router.post("/token", responses=documented(400, 422))
async def dev_token(body: DevTokenBody, settings: SettingsDep) -> DevToken:
    """A dev identity token for anyone, with any groups: UNAUTHENTICATED BY NATURE.

    Whoever reaches this endpoint can be anyone, an admin included. That is the
    point of a development stack and why it exists only there: the route is
    mounted only with ``JIT_DEV_IDENTITY=1``, never in production, where
    identities come from the OIDC provider. At most 24h.
    """
    amr = ["pwd", "mfa"] if body.mfa else None
    token = mint_dev_token(settings, body.user, list(body.groups), timedelta(seconds=body.ttl), amr=amr)
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    return DevToken(token=token, expires_at=datetime.fromtimestamp(exp, UTC))
