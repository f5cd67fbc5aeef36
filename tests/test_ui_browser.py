"""The web page in a real browser (Debian's chromium, driven by Playwright), signed in through a real OIDC provider.

The provider is ``oidc-provider-mock`` (a small OpenID provider for tests, from
PyPI) on a free port: the API knows it only by its issuer URL (discovery,
JWKS), as it would know the company's. Alice, an engineer, signs in there,
previews and files a request through the form; Bob, a db-owner who signed in
with a second factor, signs in in another browser context and approves it on
"To approve", where Alice's ``<script>`` reason shows as text; Alice sees it
active with a countdown that ticks, and revokes it.

The screenshots (the "To approve" page, the request's page) go to
``docs/ui-to-approve.png`` and ``docs/ui-request.png`` when
``JIT_UPDATE_SCREENSHOTS=1`` (the README shows them), else to the test's tmp dir.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import oidc_provider_mock
import pytest
from playwright.async_api import Browser, Page, expect

from tests.browser import chromium
from tests.conftest import EXAMPLE_CATALOG, EXAMPLE_POLICIES, ROOT, Stack, dev_server, running_stack
from tests.ui_support import fresh

ORDERS = "postgres:orders/public.orders"  # production: one approval from db-owners, who need MFA
CLIENT_ID = "jit-web"
REASON = 'INC-7: <script>alert("x")</script> checking an order'


@pytest.fixture
def oidc_issuer() -> Iterator[str]:
    with oidc_provider_mock.run_server_in_thread() as server:
        # The mock names itself after the Host it is asked on: browser and API both use this one.
        yield f"http://localhost:{server.server_port}"


@pytest.fixture
async def oidc_stack(oidc_issuer: str, tmp_path: Path) -> AsyncIterator[Stack]:
    """The example policies and catalog, the API trusting only the OIDC provider (no dev issuer),
    on a Temporal server of its own (the "To approve" page reads each request it lists)."""
    async with dev_server() as env:
        async with running_stack(
            env,
            tmp_path / "data",
            catalog_path=EXAMPLE_CATALOG,
            policies_dir=EXAMPLE_POLICIES,
            dev_identity=False,
            oidc_issuer=oidc_issuer,
            oidc_audience=CLIENT_ID,
            oidc_jwks_url=f"{oidc_issuer}/jwks",
            ui_oidc_client_id=CLIENT_ID,
            ui_oidc_client_secret="test-client-secret",  # noqa: S106 - the mock takes any
        ) as stack:
            yield stack


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


async def person(issuer: str, sub: str, groups: list[str], amr: list[str]) -> None:
    """What the provider will say about ``sub``: the claims of its ID token."""
    async with httpx.AsyncClient() as http:
        response = await http.put(f"{issuer}/users/{quote(sub)}", json={"groups": groups, "amr": amr})
        assert response.status_code == 204, response.text


async def sign_in(browser: Browser, stack: Stack, sub: str, width: int = 1100) -> Page:
    """A browser context of its own (its own cookies), signed in through the provider's form."""
    context = await browser.new_context(base_url=stack.base_url, viewport={"width": width, "height": 900})
    page = await context.new_page()
    await page.goto("/ui/requests")
    await page.get_by_role("link", name="Sign in with your company account").click()
    await page.locator("input[name=sub]").fill(sub)
    await page.get_by_role("button", name="Authorize").click()
    await expect(page.locator(".who")).to_contain_text(sub)
    await expect(page).to_have_url(re.compile(r"/ui/requests$"))
    return page


async def until_status(page: Page, locator_css: str, words: str, timeout: float = 30.0) -> None:
    """Reload until the request shows ``words``: approval to active goes through provisioning."""
    deadline = time.monotonic() + timeout
    while True:
        status = page.locator(locator_css).first
        if await status.count() and (await status.inner_text()).strip() == words:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{locator_css} did not read {words!r} within {timeout:.0f}s")
        await asyncio.sleep(0.3)
        await page.reload()


async def test_file_approve_see_the_countdown_and_revoke_in_the_browser(
    oidc_stack: Stack, oidc_issuer: str, browser: Browser, tmp_path: Path
) -> None:
    shots = ROOT / "docs" if os.environ.get("JIT_UPDATE_SCREENSHOTS") == "1" else tmp_path
    alice, bob = fresh("alice"), fresh("bob")
    await person(oidc_issuer, alice, ["engineers"], ["pwd"])
    await person(oidc_issuer, bob, ["db-owners"], ["pwd", "mfa"])

    # Alice files a request through the form, after seeing what the policies will say.
    requester = await sign_in(browser, oidc_stack, alice)
    await requester.goto("/ui/new")
    await requester.get_by_label("Resource", exact=True).select_option(ORDERS)
    await requester.get_by_label("Action", exact=True).select_option("read")
    await requester.get_by_label("Duration", exact=True).fill("15m")
    await requester.get_by_label("Reason", exact=True).fill(REASON)
    await requester.get_by_role("button", name="Preview the decision").click()
    await expect(requester.locator("#preview")).to_contain_text("Needs 1 approval from db-owners")
    await requester.get_by_role("button", name="Submit request").click()
    await expect(requester.locator(".flash")).to_contain_text("Request filed")
    await expect(requester.locator("h1 + p .status")).to_have_text("Waiting for approval")
    request_id = requester.url.rsplit("/", 1)[1]

    # Bob sees it on "To approve", the reason as text, and approves it.
    approver = await sign_in(browser, oidc_stack, bob)
    await approver.goto("/ui/approve")
    card = approver.locator(f"article[data-request='{request_id}']")
    await expect(card.locator(".reason")).to_have_text(REASON)
    await expect(card).to_contain_text("permitted by engineers-read: engineers may read any resource for up to 1h")
    await approver.screenshot(path=str(shots / "ui-to-approve.png"), full_page=True)
    # With the keyboard only: into the comment, Tab to Approve, Enter.
    await card.get_by_label("Comment (optional)").focus()
    await approver.keyboard.type("fine for INC-7")
    await approver.keyboard.press("Tab")
    await expect(card.get_by_role("button", name="Approve")).to_be_focused()
    await approver.keyboard.press("Enter")
    await expect(approver.locator(".flash")).to_have_text("Approved.")

    # Alice sees it active, with a countdown that counts.
    await requester.goto("/ui/requests")
    row = f"tr[data-request='{request_id}']"
    await until_status(requester, f"{row} .status", "Active")
    countdown = requester.locator(f"{row} .countdown")
    await expect(countdown).to_have_text(re.compile(r"^1[45]m\d\ds left$"))
    first = await countdown.inner_text()
    await expect(countdown).not_to_have_text(first)

    # Its page: the timeline, the way to its workflow; readable at 375 px.
    await requester.goto(f"/ui/requests/{request_id}")
    await expect(requester.locator(".timeline")).to_contain_text(f"Approved by {bob}: fine for INC-7")
    link = requester.get_by_role("link", name="Workflow in Temporal UI")
    await expect(link).to_have_attribute("href", re.compile(f"/workflows/access-request-{request_id}$"))
    await requester.screenshot(path=str(shots / "ui-request.png"), full_page=True)
    await requester.set_viewport_size({"width": 375, "height": 800})
    await requester.screenshot(path=str(tmp_path / "narrow.png"), full_page=True)
    assert await requester.evaluate("document.documentElement.scrollWidth") <= 375

    # The access token on demand, ready to copy.
    await requester.get_by_role("button", name="Show credentials").click()
    await expect(requester.get_by_label(re.compile("^Access token for"))).to_have_value(
        re.compile(r"^ey[\w-]+\.[\w-]+\.[\w-]+$")
    )
    await expect(requester.get_by_role("button", name="Copy the token")).to_be_visible()
    await requester.get_by_role("link", name="Back to the request").click()

    # Alice revokes it.
    revoke = requester.locator("details", has_text="Revoke")
    await revoke.locator("summary").click()
    await revoke.get_by_label("Reason").fill("done with INC-7")
    await revoke.get_by_role("button", name="Revoke now").click()
    await expect(requester.locator(".flash")).to_have_text("Revoked.")
    await expect(requester.locator("h1 + p .status")).to_have_text("Revoked")
    await expect(requester.locator(".timeline")).to_contain_text(f"Revoked by {alice}: done with INC-7")


async def test_a_forged_callback_and_the_dev_sign_in_are_refused_with_oidc_only(oidc_stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=oidc_stack.base_url) as http:
        # A code and state this browser never asked for (login CSRF): refused, nobody signed in.
        forged = await http.get("/ui/auth/callback", params={"code": "stolen", "state": "not-ours"})
        assert forged.status_code == 401
        assert "sign-in failed (mismatching_state)" in forged.text and "Traceback" not in forged.text
        assert (await http.get("/ui/requests")).status_code == 303
        # Without the dev identity issuer the dev sign-in does not exist, and the page does not offer it.
        login = await http.get("/ui/login")
        assert "Sign in with your company account" in login.text and "dev-login" not in login.text
        assert (await http.post("/ui/dev-login", data={"user": "admin"})).status_code == 404
