"""The codec endpoint: lets Temporal UI show decrypted history to auditors.

Temporal UI posts ``{"payloads": [...]}`` to ``/codec/decode`` from the
browser. Whoever can decode can read every request's history, so only
auditors and admins may; the browser proves it with a bearer token or with the
``jit_codec`` cookie set by ``/codec/login`` (the UI is same-site on
localhost, so the cookie travels with "include credentials" on).
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from api import errors
from api.deps import current_engine
from api.identity import IdentityVerifier, Unauthenticated
from core.codec import CodecError, decode_json, encode_json
from core.logging import bind as bind_log_context
from core.models import Actor
from core.settings import Settings

router = APIRouter(prefix="/codec", tags=["codec"])
COOKIE = "jit_codec"

_LOGIN_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>jit-access: decode history</title>
<style>body{font-family:system-ui;max-width:40rem;margin:3rem auto}textarea{width:100%;height:6rem}</style>
</head><body><h1>Decode history in Temporal UI</h1>
<p>Paste your identity token (auditors and admins only). It is kept in an HttpOnly cookie for this
browser so Temporal UI can ask this API to decrypt payloads.</p>
<form method="post"><textarea name="token" required></textarea><p><button>Sign in</button></p></form>
</body></html>"""


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
    bind_log_context(actor=actor.sub)
    if not current_engine(request).may_audit(actor).allowed:
        raise errors.Forbidden("only auditors and admins may decode workflow history", headers=cors)
    return actor


Auditor = Annotated[Actor, Depends(codec_user)]


def _cors(request: Request, response: Response) -> None:
    response.headers.update(_cors_headers(request))


@router.options("/{operation}")
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


@router.post("/decode")
async def decode(request: Request, _: Auditor) -> JSONResponse:
    return await _run(request, "decode")


@router.post("/encode")
async def encode(request: Request, _: Auditor) -> JSONResponse:
    return await _run(request, "encode")


@router.get("/login", include_in_schema=False)
async def login_page() -> HTMLResponse:
    return HTMLResponse(_LOGIN_PAGE)


@router.post("/login", include_in_schema=False)
async def login(request: Request) -> Response:
    tokens = parse_qs((await request.body()).decode("utf-8", "replace")).get("token", [])
    token = tokens[0].strip() if tokens else ""
    verifier: IdentityVerifier = request.app.state.identity
    try:
        actor = await verifier.authenticate(token) if token else None
    except Unauthenticated:
        actor = None
    settings: Settings = request.app.state.settings
    if actor is None or not current_engine(request).may_audit(actor).allowed:
        return HTMLResponse(_LOGIN_PAGE.replace("<form", "<p><b>Not an auditor's valid token.</b></p><form"), 403)
    response = RedirectResponse(settings.codec_cors_origin, status_code=303)
    response.set_cookie(COOKIE, token, httponly=True, samesite="lax", max_age=8 * 3600)
    return response
