"""The codec endpoint: lets Temporal UI show decrypted history to auditors.

Temporal UI posts ``{"payloads": [...]}`` to ``/codec/decode`` from the
browser. Whoever can decode can read every request's history, so only
auditors and admins may; the browser proves it with a bearer token or with the
``jit_codec`` cookie set by ``/codec/login`` (the UI is same-site on
localhost, so the cookie travels with "include credentials" on).

The cookie is ``Secure`` whenever the sign-in came over https: the request's
scheme, which uvicorn takes from ``X-Forwarded-Proto`` only when the proxy is one
it trusts (``--forwarded-allow-ips`` / ``FORWARDED_ALLOW_IPS``), or always with
``JIT_CODEC_COOKIE_ALWAYS_SECURE=1``. The sign-in form takes posts from its own
origin only (no login CSRF from another site), and its page may not be framed.

With the dev identity issuer on (``JIT_DEV_IDENTITY=1``, as ``make run`` sets),
``GET /codec/dev-login`` signs the browser in as the dev auditor in one click;
without it the path does not exist (404, as any unknown path).
"""

from __future__ import annotations

import base64
import hashlib
from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api import errors
from api.deps import current_engine
from api.identity import IdentityProviderUnavailable, IdentityVerifier, Unauthenticated
from api.openapi_errors import SIGNED_IN, documented
from core.codec import CodecError, decode_json, encode_json
from core.dev_identity import mint_dev_token
from core.logging import bind as bind_log_context
from core.models import Actor
from core.settings import Settings

router = APIRouter(prefix="/codec", tags=["codec"])
COOKIE = "jit_codec"
SIGN_IN_TTL = timedelta(hours=8)
DEV_AUDITOR = "dev-auditor"  # who /codec/dev-login signs in, in the auditors group
DEV_AUDITOR_TTL = timedelta(hours=1)

_STYLE = "body{font-family:system-ui;max-width:40rem;margin:3rem auto}textarea{width:100%;height:6rem}"
_LOGIN_PAGE = f"""<!doctype html><html><head><meta charset="utf-8"><title>jit-access: decode history</title>
<style>{_STYLE}</style>
</head><body><h1>Decode history in Temporal UI</h1>
<p>Paste your identity token (auditors and admins only). It is kept in an HttpOnly cookie for this
browser so Temporal UI can ask this API to decrypt payloads.</p>
<form method="post"><textarea name="token" required></textarea><p><button>Sign in</button></p></form>
</body></html>"""


_STYLE_HASH = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()
_CODEC_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                # Not required: proto-JSON writes an empty batch as {}.
                "properties": {
                    "payloads": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                # proto-JSON: null is the field left out
                                "metadata": {"type": ["object", "null"], "additionalProperties": {"type": "string"}},
                                "data": {"type": ["string", "null"]},
                            },
                        },
                        "description": "Temporal payloads as JSON: metadata values and data in base64",
                    }
                },
            }
        }
    },
}
_CODEC_ERRORS = {
    **documented(*SIGNED_IN, 403),
    400: {
        **documented(400)[400],
        "description": "not payloads, or a payload that does not decode (`field` is `payloads`)",
    },
}


def _page_headers(settings: Settings) -> dict[str, str]:
    """The sign-in page runs no script, loads nothing, posts only to itself (then redirects to
    Temporal UI), and may not be framed (no clickjacking of the sign-in)."""
    csp = (
        f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; form-action 'self' {settings.codec_cors_origin}; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    return {
        "Content-Security-Policy": csp,
        "X-Frame-Options": "DENY",
        # not no-referrer: with it, browsers send "Origin: null" on the form post, which is refused
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store",
    }


def _own_origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"


def _https(request: Request, settings: Settings) -> bool:
    # request.url.scheme is X-Forwarded-Proto's when uvicorn trusts the proxy that sent it.
    return settings.codec_cookie_always_secure or request.url.scheme == "https"


def _cors_headers(request: Request) -> dict[str, str]:
    """CORS headers for Temporal UI's origin (and no other): on answers and refusals alike, so
    the UI can read a 401 and tell the auditor to sign in rather than fail on a CORS error."""
    settings: Settings = request.app.state.settings
    if request.headers.get("origin") != settings.codec_cors_origin:
        return {}
    return {
        "Access-Control-Allow-Origin": settings.codec_cors_origin,
        "Access-Control-Allow-Credentials": "true",
        "Vary": "Origin",
    }


async def codec_user(request: Request) -> Actor:
    cors = _cors_headers(request)
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip() if scheme.lower() == "bearer" else request.cookies.get(COOKIE, "")
    if not token:
        raise errors.Unauthorized("sign in at /codec/login or send Authorization: Bearer <token>", headers=cors)
    verifier: IdentityVerifier = request.app.state.identity
    try:
        actor = await verifier.authenticate(token)
    except Unauthenticated as e:
        raise errors.Unauthorized(str(e), headers=cors) from e
    except IdentityProviderUnavailable as e:
        raise errors.Unavailable(str(e), headers={**cors, "Retry-After": "5"}) from e
    bind_log_context(actor=actor.sub)
    if not current_engine(request).may_audit(actor).allowed:
        raise errors.Forbidden("only auditors and admins may decode workflow history", headers=cors)
    return actor


Auditor = Annotated[Actor, Depends(codec_user)]


def _cors(request: Request, response: Response) -> None:
    response.headers.update(_cors_headers(request))


@router.options("/{operation}", include_in_schema=False)  # a CORS preflight, not an operation
async def preflight(operation: str, request: Request) -> Response:
    response = Response(status_code=204)
    _cors(request, response)
    response.headers["Access-Control-Allow-Methods"] = "POST, OPTIONS"
    response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type, X-Namespace"
    response.headers["Access-Control-Max-Age"] = "600"
    return response


async def _run(request: Request, operation: str) -> JSONResponse:
    codec = request.app.state.temporal.data_converter.payload_codec
    try:
        body = await request.body()
        result = await (decode_json if operation == "decode" else encode_json)(codec, body)
    except CodecError as e:
        raise errors.BadRequest(str(e), field="payloads", headers=_cors_headers(request)) from e
    response = JSONResponse(result, headers={"Cache-Control": "no-store"})
    _cors(request, response)
    return response


@router.post("/decode", responses=_CODEC_ERRORS, openapi_extra={"requestBody": _CODEC_BODY})
async def decode(request: Request, _: Auditor) -> JSONResponse:
    return await _run(request, "decode")


@router.post("/encode", responses=_CODEC_ERRORS, openapi_extra={"requestBody": _CODEC_BODY})
async def encode(request: Request, _: Auditor) -> JSONResponse:
    return await _run(request, "encode")


@router.get("/login", include_in_schema=False)
async def login_page(request: Request) -> HTMLResponse:
    return HTMLResponse(_LOGIN_PAGE, headers=_page_headers(request.app.state.settings))


@router.post("/login", include_in_schema=False)
async def login(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    origin = request.headers.get("origin")
    if origin is not None and origin != _own_origin(request):
        # A browser posting from another site (or a sandboxed "null" origin): a login CSRF
        # would sign the victim in as the attacker. Clients without an Origin are not browsers.
        raise errors.Forbidden(f"sign in from this API's own page ({_own_origin(request)}/codec/login)")
    tokens = parse_qs((await request.body()).decode("utf-8", "replace")).get("token", [])
    token = tokens[0].strip() if tokens else ""
    verifier: IdentityVerifier = request.app.state.identity
    try:
        actor = await verifier.authenticate(token) if token else None
    except Unauthenticated:
        actor = None
    if actor is None or not current_engine(request).may_audit(actor).allowed:
        page = _LOGIN_PAGE.replace("<form", "<p><b>Not an auditor's valid token.</b></p><form")
        return HTMLResponse(page, 403, headers=_page_headers(settings))
    return _signed_in(request, token, SIGN_IN_TTL)


@router.get("/dev-login", include_in_schema=False)
async def dev_login(request: Request) -> Response:
    """Dev only: one click signs this browser in as the dev auditor, then on to Temporal UI.

    A GET that sets a sign-in cookie is a login-CSRF vector: any page could sign
    a visitor in. Acceptable only because the route exists with the dev identity
    issuer alone, where anyone can mint any identity anyway (``jit dev-token``),
    and because it always signs in the same fixed auditor, never an identity an
    attacker chose. The token is minted here, short-lived, and goes only into the
    HttpOnly cookie.
    """
    settings: Settings = request.app.state.settings
    if not settings.dev_identity:
        raise StarletteHTTPException(status_code=404)  # absent, as any unknown path
    token = mint_dev_token(settings, DEV_AUDITOR, ["auditors"], DEV_AUDITOR_TTL)
    return _signed_in(request, token, DEV_AUDITOR_TTL)


def _signed_in(request: Request, token: str, ttl: timedelta) -> Response:
    settings: Settings = request.app.state.settings
    response = RedirectResponse(settings.codec_cors_origin, status_code=303)
    response.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="lax",
        max_age=int(ttl.total_seconds()),
        secure=_https(request, settings),
        path="/codec",
    )
    response.headers["Cache-Control"] = "no-store"
    return response
