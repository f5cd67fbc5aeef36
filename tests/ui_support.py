"""Helpers for the web page's tests: sign in through the dev sign-in form, post forms with their CSRF token."""

from __future__ import annotations

import re
import uuid

import httpx

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def fresh(name: str) -> str:
    """A user of this test alone: the dev server (and its request lists) is shared by the session."""
    return f"{name}-{uuid.uuid4().hex[:8]}"


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "no CSRF token on the page"
    return found.group(1)


async def browser_client(base_url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, timeout=30)


async def dev_sign_in(http: httpx.AsyncClient, user: str, *groups: str, mfa: bool = False) -> None:
    """Sign ``http`` (one browser: its own cookie jar) in as ``user`` through the dev sign-in form."""
    login = await http.get("/ui/login")
    assert login.status_code == 200, login.text
    form = {"csrf": csrf_of(login.text), "user": user, "groups": ",".join(groups)}
    if mfa:
        form["mfa"] = "on"
    signed_in = await http.post("/ui/dev-login", data=form)
    assert signed_in.status_code == 303, signed_in.text


async def post_form(http: httpx.AsyncClient, page: str, action: str, **fields: str) -> httpx.Response:
    """Post a form of ``page`` to ``action`` with the CSRF token the page carries, as a browser would."""
    shown = await http.get(page)
    assert shown.status_code == 200, shown.text
    return await http.post(action, data={"csrf": csrf_of(shown.text), **fields})
