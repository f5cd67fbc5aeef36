"""The web page over HTTP (no browser): sessions, CSRF, headers, escaping, and refusals as the REST API words them.

On the example policies and catalog (as ``make run`` serves them), signed in
through the dev sign-in form; the browser flow with a real OIDC provider is
tests/test_ui_browser.py.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import pytest
from itsdangerous import URLSafeTimedSerializer

from api.ui.session import COOKIE, session_secret
from tests.conftest import EXAMPLE_CATALOG, EXAMPLE_POLICIES, Stack, dev_server, running_stack
from tests.e2e_support import wait_until
from tests.ui_support import csrf_of, dev_sign_in, fresh, post_form

ORDERS = "postgres:orders/public.orders"  # production: one approval from db-owners, with MFA


@pytest.fixture(scope="module")
async def example_stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """The example policies and catalog, on a Temporal server and worker of this module's own: the
    "To approve" page reads each request it lists, and another test's request, its worker gone,
    would not answer."""
    async with dev_server() as env:
        data_dir = tmp_path_factory.mktemp("ui") / "data"
        async with running_stack(env, data_dir, catalog_path=EXAMPLE_CATALOG, policies_dir=EXAMPLE_POLICIES) as stack:
            yield stack


async def file_request(stack: Stack, user: str, reason: str = "INC-42: checking") -> str:
    response = await stack.http.post(
        "/v1/requests",
        json={"resource": ORDERS, "action": "read", "duration": "15m", "reason": reason},
        headers=stack.auth(user, "engineers"),
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def test_pages_need_a_session(example_stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=example_stack.base_url) as browser:
        for path in ("/ui", "/ui/requests", "/ui/approve", "/ui/new", "/ui/reviews", "/ui/requests/abcd1234"):
            response = await browser.get(path)
            assert response.status_code == 303, path
            assert response.headers["location"].startswith("/ui/login"), path


async def test_session_cookie_flags_over_http_and_behind_a_tls_proxy(example_stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=example_stack.base_url) as browser:
        login = await browser.get("/ui/login")
        form = {"csrf": csrf_of(login.text), "user": fresh("alice"), "groups": "engineers"}
        plain = await browser.post("/ui/dev-login", data=form)
        cookie = plain.headers["set-cookie"].lower()
        assert cookie.startswith(COOKIE) and "httponly" in cookie and "samesite=lax" in cookie
        assert "secure" not in cookie and "path=/ui" in cookie
    # uvicorn trusts X-Forwarded-Proto from 127.0.0.1 (its default FORWARDED_ALLOW_IPS): our "proxy".
    https = {"X-Forwarded-Proto": "https"}
    async with httpx.AsyncClient(base_url=example_stack.base_url) as browser:
        login = await browser.get("/ui/login", headers=https)
        assert "; secure" in login.headers["set-cookie"].lower()  # the signed-out session (its CSRF token) too
        # The client speaks http to the "proxy", so it would not send a Secure cookie back: a browser would.
        https["Cookie"] = f"{COOKIE}={login.cookies[COOKIE]}"
        form = {"csrf": csrf_of(login.text), "user": fresh("alice"), "groups": "engineers"}
        behind_tls = await browser.post("/ui/dev-login", data=form, headers=https)
        assert behind_tls.status_code == 303
        cookie = behind_tls.headers["set-cookie"].lower()
        assert "; secure" in cookie and "httponly" in cookie and "samesite=lax" in cookie


async def test_page_headers_forbid_inline_script_framing_and_cross_site_referrers(example_stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=example_stack.base_url) as browser:
        for path in ("/ui/login", "/ui/static/ui.js"):
            response = await browser.get(path)
            assert response.status_code == 200, path
            csp = response.headers["content-security-policy"]
            assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
            assert response.headers["referrer-policy"] == "same-origin"
        # The REST API is not a page: its answers are left as they were.
        assert "content-security-policy" not in (await browser.get("/healthz")).headers


async def test_a_form_post_without_the_csrf_token_is_refused(example_stack: Stack) -> None:
    alice = fresh("alice")
    async with httpx.AsyncClient(base_url=example_stack.base_url) as browser:
        await dev_sign_in(browser, alice, "engineers")
        body = {"resource": ORDERS, "action": "read", "duration": "15m", "reason": "r", "intent": "submit"}
        missing = await browser.post("/ui/new", data=body)
        wrong = await browser.post("/ui/new", data={**body, "csrf": "not-the-token"})
        for refused in (missing, wrong):
            assert refused.status_code == 403
            assert "did not come from this page" in refused.text
        # Nothing was filed, and sign-out needs the token too.
        mine = await example_stack.http.get("/v1/requests?mine=true", headers=example_stack.auth(alice, "engineers"))
        assert mine.json()["items"] == []
        assert (await browser.post("/ui/logout")).status_code == 403
        assert (await browser.get("/ui/requests")).status_code == 200  # still signed in


async def test_a_reason_with_a_script_tag_is_shown_as_text(example_stack: Stack) -> None:
    request_id = await file_request(example_stack, fresh("alice"), reason='<script>alert("x")</script> & more')
    async with httpx.AsyncClient(base_url=example_stack.base_url) as browser:
        await dev_sign_in(browser, fresh("bob"), "db-owners", mfa=True)
        for path in (f"/ui/requests/{request_id}", "/ui/approve"):
            html = (await browser.get(path)).text
            assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; more" in html, path
            assert "<script>alert" not in html, path


async def test_an_approver_without_mfa_is_told_why_a_production_approval_is_refused(example_stack: Stack) -> None:
    request_id = await file_request(example_stack, fresh("alice"))
    rest = await example_stack.http.post(
        f"/v1/requests/{request_id}/approve", json={}, headers=example_stack.auth("bob", "db-owners")
    )
    assert rest.status_code == 403
    message = rest.json()["error"]["message"]
    assert "MFA" in message
    async with httpx.AsyncClient(base_url=example_stack.base_url) as browser:
        await dev_sign_in(browser, "bob", "db-owners")
        refused = await post_form(browser, "/ui/approve", f"/ui/requests/{request_id}/approve", back="/ui/approve")
        assert refused.status_code == 403
        assert message.replace('"', "&#34;") in refused.text or message in refused.text
        assert "Traceback" not in refused.text
    view = await example_stack.http.get(f"/v1/requests/{request_id}", headers=example_stack.auth("bob", "db-owners"))
    assert view.json()["status"] == "pending"


async def test_a_request_the_user_may_not_see_is_not_found_as_in_the_rest_api(example_stack: Stack) -> None:
    request_id = await file_request(example_stack, fresh("alice"))
    mallory = fresh("mallory")
    rest = await example_stack.http.get(f"/v1/requests/{request_id}", headers=example_stack.auth(mallory, "engineers"))
    assert rest.status_code == 404
    async with httpx.AsyncClient(base_url=example_stack.base_url) as browser:
        await dev_sign_in(browser, mallory, "engineers")
        hidden = await browser.get(f"/ui/requests/{request_id}")
        unknown = await browser.get("/ui/requests/00000000-0000-4000-8000-000000000000")
        assert hidden.status_code == unknown.status_code == 404
        assert rest.json()["error"]["message"] in hidden.text
        revoke = await post_form(browser, "/ui/requests", f"/ui/requests/{request_id}/cancel")
        assert revoke.status_code == 404


async def test_a_session_ends_when_idle_too_long_and_on_sign_out(example_stack: Stack) -> None:
    settings = example_stack.settings
    signer = URLSafeTimedSerializer(session_secret(settings), salt="jit-ui-session")
    long_ago = int(time.time()) - settings.ui_session_idle_s - 5
    stale = signer.dumps({"sub": "alice", "groups": ["engineers"], "mfa": False, "started": long_ago, "seen": long_ago})
    async with httpx.AsyncClient(base_url=example_stack.base_url, cookies={COOKIE: stale}) as browser:
        response = await browser.get("/ui/requests")
        assert response.status_code == 303 and "expired=1" in response.headers["location"]
    forged = URLSafeTimedSerializer("another key", salt="jit-ui-session").dumps({"sub": "admin", "started": 0})
    async with httpx.AsyncClient(base_url=example_stack.base_url, cookies={COOKIE: forged}) as browser:
        assert (await browser.get("/ui/requests")).status_code == 303
    async with httpx.AsyncClient(base_url=example_stack.base_url) as browser:
        await dev_sign_in(browser, fresh("alice"), "engineers")
        assert (await browser.get("/ui/requests")).status_code == 200
        signed_out = await post_form(browser, "/ui/requests", "/ui/logout")
        assert signed_out.status_code == 303
        assert (await browser.get("/ui/requests")).status_code == 303


async def test_cancel_and_extend_through_the_page_and_the_extension_waits_on_to_approve(example_stack: Stack) -> None:
    alice = fresh("alice")
    pending, active = await file_request(example_stack, alice), await file_request(example_stack, alice)
    approved = await example_stack.http.post(
        f"/v1/requests/{active}/approve", json={}, headers=example_stack.auth("bob", "db-owners", mfa=True)
    )
    assert approved.status_code == 200, approved.text
    async with httpx.AsyncClient(base_url=example_stack.base_url) as browser:
        await dev_sign_in(browser, alice, "engineers")
        cancelled = await post_form(browser, "/ui/requests", f"/ui/requests/{pending}/cancel")
        assert cancelled.status_code == 303
        # Too long for the policies: refused with their words, nothing asked.
        too_long = await post_form(
            browser, f"/ui/requests/{active}", f"/ui/requests/{active}/extend", duration="3h", reason="more"
        )
        assert too_long.status_code in (403, 422) and "Traceback" not in too_long.text
        extended = await post_form(
            browser, f"/ui/requests/{active}", f"/ui/requests/{active}/extend", duration="15m", reason="still digging"
        )
        assert extended.status_code == 303 and extended.headers["location"] == f"/ui/requests/{active}"
        page = await browser.get(f"/ui/requests/{active}")
        assert "Extension asked." in page.text and "waiting for approval" in page.text
        mine = (await browser.get("/ui/requests")).text
        assert "Cancelled" in mine and "extension waiting" in mine
    async with httpx.AsyncClient(base_url=example_stack.base_url) as browser:
        await dev_sign_in(browser, fresh("bob"), "db-owners", mfa=True)
        to_approve = (await browser.get("/ui/approve")).text
        assert f'data-request="{active}"' in to_approve and "Approve extension" in to_approve
        assert f'data-request="{pending}"' not in to_approve


async def test_a_break_glass_grant_is_listed_for_its_reviewers_and_acknowledged_from_the_page(
    example_stack: Stack,
) -> None:
    sam = fresh("sam")
    body = {"resource": ORDERS, "action": "read", "duration": "15m", "reason": "INC-911: outage", "break_glass": True}
    taken = await example_stack.http.post("/v1/requests", json=body, headers=example_stack.auth(sam, "sre", mfa=True))
    assert taken.status_code == 201 and taken.json()["status"] == "active", taken.text
    rid = taken.json()["id"]
    async with httpx.AsyncClient(base_url=example_stack.base_url) as browser:
        await dev_sign_in(browser, fresh("bob"), "db-owners")

        async def listed() -> bool:  # the list is read from Temporal's visibility store, which trails by moments
            return rid in (await browser.get("/ui/reviews")).text

        await wait_until(listed, timeout=30, what="the break-glass grant on Reviews")
        done = await post_form(
            browser, "/ui/reviews", f"/ui/requests/{rid}/acknowledge", comment="looked: fine", back="/ui/reviews"
        )
        assert done.status_code == 303 and done.headers["location"] == "/ui/reviews"

        async def gone() -> bool:
            return rid not in (await browser.get("/ui/reviews")).text

        await wait_until(gone, timeout=30, what="the acknowledged grant off Reviews")
    view = await example_stack.http.get(f"/v1/requests/{rid}", headers=example_stack.auth(sam, "sre"))
    assert view.json()["review"]["actor"].startswith("bob-") and view.json()["review"]["reason"] == "looked: fine"
