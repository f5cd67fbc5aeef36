"""CSRF protection for the web page's forms: a per-session token in a hidden field.

Every form post must carry the session's token (``csrf``); one without it, or
with another session's, is refused (403) before anything is done. SameSite=Lax
already keeps the session cookie off other sites' posts; the token also covers
an older browser, or a same-site page (another app on a sibling host).
"""

from __future__ import annotations

import secrets
from typing import Any

from starlette.requests import Request

from api.errors import Forbidden

FIELD = "csrf"
REFUSED = "this form has expired or did not come from this page: reload the page and try again"


def token(session: dict[str, Any]) -> str:
    """The session's token, made on first use (a signed-out page's forms need one too)."""
    if FIELD not in session:
        session[FIELD] = secrets.token_urlsafe(32)
    return session[FIELD]


async def checked_form(request: Request) -> dict[str, str]:
    """The posted form's text fields, once its CSRF token matches the session's; else 403."""
    form = await request.form()
    sent = form.get(FIELD)
    expected = request.session.get(FIELD)
    if not isinstance(sent, str) or not expected or not secrets.compare_digest(sent, expected):
        raise Forbidden(REFUSED, field=FIELD)
    return {k: v for k, v in form.items() if isinstance(v, str) and k != FIELD}
