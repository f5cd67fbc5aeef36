"""The web page's session: a signed cookie, idle and absolute timeouts, and the page's headers.

The session is the cookie itself (no server-side store: any API replica can
read it), signed with ``JIT_UI_SESSION_SECRET`` or a key made once in the data
dir. It holds who signed in (sub, groups, MFA: the same ``Actor`` the REST API
builds from a bearer token), when, when last seen, and the CSRF token; while
signing in, authlib keeps its state, nonce and PKCE verifier in it too.

It ends ``ui_session_idle_s`` after the last request and ``ui_session_max_s``
after sign-in, whichever comes first: the signature's timestamp and the times
inside are both checked, so an old cookie replayed from a copy fails too.

The cookie is HttpOnly, SameSite=Lax, and Secure whenever the request came over
https: its scheme, which uvicorn takes from ``X-Forwarded-Proto`` only from the
proxies it trusts (as the codec cookie, api/routes/codec.py), or always with
``JIT_CODEC_COOKIE_ALWAYS_SECURE=1``.

Only paths under ``/ui`` see a session or get the page headers (a CSP without
``unsafe-inline``, no framing, same-origin referrers); the REST API is untouched.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.models import Actor
from core.private_files import FILE_MODE, private_dir
from core.settings import Settings

COOKIE = "jit_ui"
PREFIX = "/ui"
STATIC_PREFIX = "/ui/static/"
EXPIRED = "_expired"  # set in a fresh session when the cookie's session had timed out

PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}


def session_secret(settings: Settings) -> str:
    """The cookie-signing secret: the setting, else a random one made once in the data dir."""
    if settings.ui_session_secret:
        return settings.ui_session_secret
    path: Path = settings.ui_session_key_path
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        secret = secrets.token_urlsafe(48)
        f.write(secret)
    return secret


def signed_in(session: dict[str, Any]) -> Actor | None:
    """Who this session belongs to, or None before sign-in."""
    if "sub" not in session:
        return None
    return Actor(sub=session["sub"], groups=session.get("groups", []), mfa=bool(session.get("mfa")))


def start(session: dict[str, Any], actor: Actor) -> None:
    """A new session for ``actor``: everything before it (another user's, a fixed token) dropped."""
    keep_next = session.get("next")
    session.clear()
    now = int(time.time())
    session.update(sub=actor.sub, groups=actor.groups, mfa=actor.mfa, started=now, seen=now)
    session["csrf"] = secrets.token_urlsafe(32)
    if keep_next:
        session["next"] = keep_next


class UiSessionMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings):
        self.app = app
        self._settings = settings
        self._serializer = URLSafeTimedSerializer(session_secret(settings), salt="jit-ui-session")

    def _load(self, cookie: str | None) -> tuple[dict[str, Any], bool]:
        """The session in the cookie, and whether one was there but has timed out."""
        if not cookie:
            return {}, False
        try:
            data = self._serializer.loads(cookie, max_age=self._settings.ui_session_max_s)
        except BadSignature:
            return {}, False  # tampered with, from another key, or past the absolute timeout
        if not isinstance(data, dict):
            return {}, False
        now = time.time()
        if "sub" in data:
            idle = now - float(data.get("seen", 0)) > self._settings.ui_session_idle_s
            too_old = now - float(data.get("started", 0)) > self._settings.ui_session_max_s
            if idle or too_old:
                return {EXPIRED: True}, True
        return data, False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path == PREFIX or path.startswith(PREFIX + "/")):
            await self.app(scope, receive, send)
            return
        connection = HTTPConnection(scope)
        had_cookie = COOKIE in connection.cookies
        static = path.startswith(STATIC_PREFIX)
        session, _ = ({}, False) if static else self._load(connection.cookies.get(COOKIE))
        before = json.dumps(session, sort_keys=True)
        scope["session"] = session
        secure = self._settings.codec_cookie_always_secure or connection.url.scheme == "https"

        async def send_with_session(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in PAGE_HEADERS.items():
                    headers[name] = value
                if not static:
                    headers["Cache-Control"] = "no-store"
                    cookie = self._cookie(scope["session"], before, had_cookie, secure)
                    if cookie:
                        headers.append("Set-Cookie", cookie)
            await send(message)

        await self.app(scope, receive, send_with_session)

    def _cookie(self, session: dict[str, Any], before: str, had_cookie: bool, secure: bool) -> str | None:
        flags = "; Path=/ui; HttpOnly; SameSite=Lax" + ("; Secure" if secure else "")
        session.pop(EXPIRED, None)
        if not session:
            return f"{COOKIE}=; Max-Age=0{flags}" if had_cookie else None
        if "sub" in session:
            session["seen"] = int(time.time())  # every request moves the idle deadline
            max_age = max(0, int(session["started"]) + self._settings.ui_session_max_s - int(time.time()))
        elif json.dumps(session, sort_keys=True) == before:
            return None  # an unchanged anonymous session: nothing to send
        else:
            max_age = self._settings.ui_session_idle_s
        value = self._serializer.dumps(session)
        return f"{COOKIE}={value}; Max-Age={max_age}{flags}"
