"""Signing in to the web page: OIDC (authorization code with PKCE), the dev sign-in, sign-out.

The OIDC client is authlib's Starlette integration, registered against
``JIT_OIDC_ISSUER`` by its discovery document; the ID token it verifies (the
provider's JWKS, issuer, audience = our client id, nonce) gives the claims, and
:func:`api.identity.actor_from_claims` turns them into the same ``Actor`` a
bearer token gives the REST API: ``sub``, the groups claim
(``JIT_OIDC_GROUPS_CLAIM``), MFA from ``amr``/``acr``.

The dev sign-in (pick a user, groups, MFA) exists only while the dev identity
issuer is on (``JIT_DEV_IDENTITY=1``, as ``make run`` sets): as ``POST
/v1/dev/token``, it lets anyone be anyone, which is the point of a dev stack.
"""

from __future__ import annotations

import logging
import re
import warnings

from authlib.deprecate import AuthlibDeprecationWarning
from authlib.integrations.base_client import OAuthError

with warnings.catch_warnings():
    # authlib 1.9 warns on import that its httpx client moves to httpx2: nothing for us to do
    # until it does, and the warning would greet every start of the API.
    warnings.simplefilter("ignore", AuthlibDeprecationWarning)
    from authlib.integrations.starlette_client import OAuth
from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from api import errors
from api.identity import Unauthenticated, actor_from_claims
from api.schemas import DEV_NAME_PATTERN
from api.ui import csrf, session
from api.ui.render import UiRoute, page
from core.models import Actor
from core.settings import Settings

log = logging.getLogger("jit.api.ui")

_DEV_NAME = re.compile(DEV_NAME_PATTERN)


def oidc_client(settings: Settings) -> OAuth | None:
    if not (settings.oidc_issuer and settings.ui_oidc_client_id):
        return None
    oauth = OAuth()
    oauth.register(
        "idp",
        client_id=settings.ui_oidc_client_id,
        client_secret=settings.ui_oidc_client_secret,
        server_metadata_url=settings.oidc_issuer.rstrip("/") + "/.well-known/openid-configuration",
        client_kwargs={"scope": settings.ui_oidc_scopes, "code_challenge_method": "S256"},
    )
    return oauth


def _next(value: str | None) -> str:
    """Where to go after sign-in: a page of ours only (no open redirect)."""
    if value and re.fullmatch(r"/ui(/[A-Za-z0-9/_.-]*)?", value):
        return value
    return "/ui/requests"


def build_router(settings: Settings) -> APIRouter:
    router = APIRouter(prefix="/ui", route_class=UiRoute)
    oauth = oidc_client(settings)

    def _signed_in(request: Request, actor: Actor) -> Response:
        session.start(request.session, actor)
        return RedirectResponse(_next(request.session.pop("next", None)), status_code=303)

    @router.get("/login")
    async def login(request: Request, next: str | None = None, expired: str | None = None) -> Response:
        if next:
            request.session["next"] = _next(next)
        return page(
            request,
            "login.html",
            oidc=oauth is not None,
            issuer=settings.oidc_issuer,
            dev=settings.dev_identity,
            expired=bool(expired),
        )

    @router.get("/login/oidc")
    async def login_oidc(request: Request) -> Response:
        if oauth is None:
            raise errors.NotFound("sign-in with an identity provider is not configured on this server")
        redirect_uri = str(request.url_for("ui_oidc_callback"))
        try:
            return await oauth.idp.authorize_redirect(request, redirect_uri)
        except Exception as e:  # the provider's discovery document is unreachable or broken
            log.warning("cannot start OIDC sign-in: %s: %s", type(e).__name__, e)
            raise errors.Unavailable("the identity provider cannot be reached; try again shortly") from e

    @router.get("/auth/callback", name="ui_oidc_callback")
    async def oidc_callback(request: Request) -> Response:
        if oauth is None:
            raise errors.NotFound("sign-in with an identity provider is not configured on this server")
        try:
            token = await oauth.idp.authorize_access_token(request)
        except OAuthError as e:
            # The provider's error code (access_denied, mismatching_state, ...), never a token.
            log.info("OIDC sign-in failed: %s", e.error)
            raise errors.Unauthorized(f"sign-in failed ({e.error}): start again from the sign-in page") from e
        claims = token.get("userinfo")
        if not claims:
            raise errors.Unauthorized("sign-in failed: the identity provider sent no ID token (is 'openid' a scope?)")
        try:
            actor = actor_from_claims(dict(claims), settings.oidc_groups_claim)
        except Unauthenticated as e:
            raise errors.Unauthorized(f"sign-in failed: {e}") from e
        return _signed_in(request, actor)

    if settings.dev_identity:

        @router.post("/dev-login")
        async def dev_login(request: Request) -> Response:
            form = await csrf.checked_form(request)
            user = form.get("user", "").strip()
            groups = [g for g in re.split(r"[\s,]+", form.get("groups", "")) if g]
            for name, value in [("user", user), *(("groups", g) for g in groups)]:
                if not _DEV_NAME.fullmatch(value):
                    raise errors.Invalid(f"{name}: may hold only letters, digits and _.:/@+- (1 to 200)", field=name)
            return _signed_in(request, Actor(sub=user, groups=groups, mfa=form.get("mfa") == "on"))

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        await csrf.checked_form(request)
        request.session.clear()
        return RedirectResponse("/ui/login", status_code=303)

    return router
