"""What resource servers call: the JWKS and RFC 7662 introspection."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api import errors
from api.deps import CurrentUser, Engine, Grants, Keys
from core import access_tokens

router = APIRouter(tags=["tokens"])

_INACTIVE = {"active": False}
_NO_STORE = {"Cache-Control": "no-store"}


@router.get("/.well-known/jwks.json")
async def jwks(keys: Keys) -> JSONResponse:
    # Short cache: a rotated-in key must reach verifiers before it signs much.
    return JSONResponse(keys.jwks(), headers={"Cache-Control": "public, max-age=300"})


@router.post("/v1/introspect")
async def introspect(
    request: Request, user: CurrentUser, grants: Grants, engine: Engine
) -> JSONResponse:
    """``token=<jwt>`` as a form: ``active`` only while the grant is live.

    A signature check and one primary-key read: no workflow query, so
    resource servers can call it on every request they serve. Who may ask is
    the policies' ``introspect`` (config/policies/admin.cedar).
    """
    if not engine.may_introspect(user).allowed:
        raise errors.Forbidden("only resource servers may introspect tokens")
    if "application/x-www-form-urlencoded" not in request.headers.get("content-type", ""):
        raise errors.BadRequest("send the token as a form: token=<access token>", field="token")
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    tokens = form.get("token", [])
    if len(tokens) != 1 or not tokens[0]:
        raise errors.BadRequest("token is required, once", field="token")
    verified: access_tokens.VerifiedTokens = request.app.state.verified_tokens
    return JSONResponse(_introspect(tokens[0], grants, verified), headers=_NO_STORE)


def _introspect(token: str, grants: Any, verified: access_tokens.VerifiedTokens) -> dict[str, Any]:
    try:
        claims = verified.verify(token)
    except access_tokens.InvalidAccessToken:
        return _INACTIVE
    grant = grants.lookup(claims["jti"])
    if grant is None or not grant.is_live(datetime.now(UTC)):
        return _INACTIVE
    return {"active": True, "token_type": "Bearer", **claims}
