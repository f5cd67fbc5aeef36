"""What resource servers call: the JWKS and RFC 7662 introspection.

Introspection is asked on every request a resource server serves, so it is
served below FastAPI's dependency layer (:class:`DirectRoute`): no dependency
solving, no parameter parsing, no response model, which were most of its cost
(docs/benchmarks.md, "Introspection throughput"). It is still an ``APIRoute``,
documented in the OpenAPI schema like the others, its errors still go through
api/errors.py, and the caller is authenticated by the same code
(api.deps.authenticate).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from api import errors
from api.deps import Keys, authenticate, current_engine
from api.openapi_errors import SIGNED_IN, documented
from api.recent_grants import RecentGrants
from api.schemas import Introspection
from core import access_tokens

router = APIRouter(tags=["tokens"])

INTROSPECT_PATH = "/v1/introspect"
_FORM = "application/x-www-form-urlencoded"
_INACTIVE = {"active": False}
_NO_STORE = {"Cache-Control": "no-store"}


@router.get("/.well-known/jwks.json", responses=documented())
async def jwks(keys: Keys) -> JSONResponse:
    # Short cache: a rotated-in key must reach verifiers before it signs much.
    return JSONResponse(keys.jwks(), headers={"Cache-Control": "public, max-age=300"})


class DirectRoute(APIRoute):
    """An APIRoute whose endpoint is called with the bare Request and answers the Response itself.

    FastAPI still builds the route's OpenAPI entry from its arguments; at run
    time only Starlette's request/response wrapping and the app's exception
    handlers remain. So no dependency runs here, not even one declared on the
    app or a router: the endpoint does its own authentication.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        return self.endpoint  # type: ignore[return-value]


async def introspect(request: Request) -> Response:
    """``token=<jwt>`` as a form: ``active`` only while the grant is live.

    A signature check (once per token) and one primary-key read: no workflow
    query, so resource servers can call it on every request they serve (a row
    read in the last ``JIT_INTROSPECTION_CACHE_S`` answers: api/recent_grants.py).
    Who may ask is the policies' ``introspect`` (config/policies/admin.cedar).
    Answered with ``Cache-Control: no-store``: a revoked token must read
    inactive as soon as this API knows.
    """
    state = request.app.state
    user = await authenticate(state.identity, request.headers.get("authorization"))
    if not current_engine(request).may_introspect(user).allowed:
        raise errors.Forbidden("only resource servers may introspect tokens")
    if _FORM not in request.headers.get("content-type", ""):
        raise errors.BadRequest("send the token as a form: token=<access token>", field="token")
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    tokens = form.get("token", [])
    if len(tokens) != 1 or not tokens[0]:
        raise errors.BadRequest("token is required, once", field="token")
    return JSONResponse(_introspect(tokens[0], state.recent_grants, state.verified_tokens), headers=_NO_STORE)


def _introspect(token: str, grants: RecentGrants, verified: access_tokens.VerifiedTokens) -> dict[str, Any]:
    try:
        claims = verified.verify(token)
    except access_tokens.InvalidAccessToken:
        return _INACTIVE
    grant = grants.lookup(claims["jti"])
    if grant is None or not grant.is_live(datetime.now(UTC)):
        return _INACTIVE
    return {"active": True, "token_type": "Bearer", **claims}


_FORM_BODY = {
    "required": True,
    "content": {
        _FORM: {
            "schema": {
                "type": "object",
                "required": ["token"],
                "properties": {"token": {"type": "string", "description": "the access token, once"}},
            }
        }
    },
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    **documented(*SIGNED_IN),
    400: {**documented(400)[400], "description": "not a form, or no (or more than one) `token`: `field` is `token`"},
    403: {**documented(403)[403], "description": "the policies' `introspect` refuses the caller"},
}


def install(app: FastAPI) -> None:
    """Add ``POST /v1/introspect`` to ``app``.

    Call it before including the routers: routes are matched in order, and
    this one, the busiest, is then tried first.
    """
    app.router.add_api_route(
        INTROSPECT_PATH,
        introspect,
        methods=["POST"],
        tags=["tokens"],
        response_model=Introspection,
        responses=_ERRORS,
        openapi_extra={"requestBody": _FORM_BODY},
        route_class_override=DirectRoute,
    )
