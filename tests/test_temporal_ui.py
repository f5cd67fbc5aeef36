"""Temporal UI in a real browser (Debian's chromium, driven by Playwright), as an auditor uses it.

The dev server runs with its Web UI; the worker and the API run as in the
other end-to-end tests, the codec endpoint allowing the UI's origin. Two
requesters file requests; the auditor signs in at the API's ``/codec/login``,
points the UI's codec server setting at the API (with cross-origin
credentials, as the README says), and filters the workflows with
``JitRequester="alice"``: alice's workflows are listed, carol's are not, and
each one shows its decrypted summary (``alice: read … for 15m``).

The screenshots (the filtered list, one request's summary) go to
``docs/temporal-ui.png`` and ``docs/temporal-ui-request.png`` when
``JIT_UPDATE_SCREENSHOTS=1`` (the README shows them), else to the test's tmp dir.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from playwright.async_api import Browser, Page, expect
from temporalio.testing import WorkflowEnvironment

from core.temporal import DATA_CONVERTER, SEARCH_ATTRIBUTES, connect, workflow_id
from tests.browser import UI_TIMEOUT_MS, chromium
from tests.conftest import BIN, ROOT, Stack, free_port, make_settings, serve_api
from worker import build_worker

ORDERS = "postgres:orders/public.orders"  # one approval from db-owners
LOGS = "k8s:prod/logs"  # auto-approved


@dataclass
class UiStack:
    stack: Stack
    ui_url: str


@pytest.fixture
async def ui_stack(tmp_path: Path) -> AsyncIterator[UiStack]:
    """A dev server with its UI on a free port, a worker and the API whose codec endpoint allows the UI."""
    ui_port = free_port()
    ui_url = f"http://127.0.0.1:{ui_port}"
    env = await WorkflowEnvironment.start_local(
        ui=True,
        ui_port=ui_port,
        dev_server_existing_path=str(BIN / "temporal"),
        search_attributes=SEARCH_ATTRIBUTES,
        data_converter=DATA_CONVERTER,
        dev_server_log_level="error",
        dev_server_extra_args=["--ui-disable-news-fetch"],
    )
    try:
        # This dev server is the test's own: the task queue make run uses, as the screenshots show.
        settings = make_settings(env.client, tmp_path / "data", codec_cors_origin=ui_url, task_queue="jit-access")
        client = await connect(settings)
        with ThreadPoolExecutor(max_workers=4) as executor:
            async with build_worker(client, settings, executor):
                server, task, base_url = await serve_api(settings)
                try:
                    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
                        yield UiStack(Stack(settings, client, http, base_url, server.config.app), ui_url)
                finally:
                    server.should_exit = True
                    await task
    finally:
        await env.shutdown()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


async def file_request(stack: Stack, user: str, resource: str) -> str:
    response = await stack.http.post(
        "/v1/requests",
        json={"resource": resource, "action": "read", "duration": "15m", "reason": "INC-42: checking"},
        headers=stack.auth(user, "engineers"),
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def wait_until_listed(stack: Stack, query: str, expected: int, timeout: float = 30.0) -> None:
    """Visibility is eventually consistent: wait (with a deadline) until the UI's query can find them all."""
    deadline = time.monotonic() + timeout
    while (await stack.client.count_workflows(query)).count < expected:
        if time.monotonic() > deadline:
            raise AssertionError(f"{query!r} did not list {expected} workflows within {timeout:.0f}s")
        await asyncio.sleep(0.2)


async def sign_in_and_set_codec(page: Page, stack: Stack, ui_url: str) -> None:
    """What the README tells an auditor to do: sign in at the API, then point the UI's codec setting at it."""
    await page.goto(f"{stack.base_url}/codec/login")
    await page.fill("textarea[name=token]", stack.token("erin", "auditors"))
    await page.click("button:has-text('Sign in')")
    await page.wait_for_url(f"{ui_url}/**", timeout=UI_TIMEOUT_MS)  # sent back to Temporal UI
    await page.locator("[data-testid^=data-encoder-status]:visible").first.click()
    local = page.locator("[data-testid=use-local-endpoint-input]")
    if await local.count():
        await local.check()
    await page.get_by_placeholder("Paste your endpoint here").fill(f"{stack.base_url}/codec")
    await page.locator("label:has(#pass-access-credentials)").click()
    await expect(page.locator("#pass-access-credentials")).to_be_checked()
    await page.locator("[data-testid=confirm-modal-button]:visible").click()


async def test_auditor_filters_by_requester_and_reads_summaries(ui_stack: UiStack, browser: Browser, tmp_path: Path):
    stack, ui_url = ui_stack.stack, ui_stack.ui_url
    shots = ROOT / "docs" if os.environ.get("JIT_UPDATE_SCREENSHOTS") == "1" else tmp_path
    # alice: one active (auto-approved), one pending, one revoked; carol: one pending.
    alice = [await file_request(stack, "alice", LOGS), await file_request(stack, "alice", ORDERS)]
    alice.append(await file_request(stack, "alice", LOGS))
    revoked = await stack.http.post(
        f"/v1/requests/{alice[2]}/revoke", json={"reason": "done"}, headers=stack.auth("alice", "engineers")
    )
    assert revoked.json()["status"] == "revoked", revoked.text
    carol = [await file_request(stack, "carol", ORDERS)]
    queue = f"TaskQueue = '{stack.settings.task_queue}'"
    statuses = {"active": 1, "pending": 2, "revoked": 1}
    for status, count in statuses.items():
        await wait_until_listed(stack, f"{queue} AND JitStatus = '{status}'", expected=count)

    page = await browser.new_page(viewport={"width": 1600, "height": 600})
    page.set_default_timeout(UI_TIMEOUT_MS)
    await sign_in_and_set_codec(page, stack, ui_url)

    query = 'JitRequester="alice"'
    listing = f"{ui_url}/namespaces/{stack.settings.temporal_namespace}/workflows?query={quote(query)}"
    await page.goto(listing)
    for request_id in alice:
        await expect(page.get_by_role("link", name=workflow_id(request_id), exact=True)).to_be_visible()
    rows = page.locator("table tbody tr")
    await expect(rows).to_have_count(len(alice))
    for request_id in carol:
        await expect(page.get_by_text(workflow_id(request_id))).to_have_count(0)

    # The search attributes an auditor reads, as columns (kept in the browser for the next visit).
    await page.get_by_role("button", name="Configure Columns").click()
    for column in ("Run ID", "Type", "Start", "End"):
        await page.get_by_role("button", name=f"Remove {column} column").click()
    for column in ("JitStatus", "JitResource", "JitExpiresAt"):
        await page.get_by_role("button", name=f"Add {column} column").click()
    await page.get_by_role("button", name="Close Workflows Table configuration").click()
    await expect(page.get_by_text("Configure Workflows Table")).to_be_hidden()
    for request_id, status in zip(alice, ("active", "pending", "revoked"), strict=True):
        row = rows.filter(has=page.get_by_role("link", name=workflow_id(request_id), exact=True))
        await expect(row).to_contain_text(status)
    await page.screenshot(path=str(shots / "temporal-ui.png"))

    # Each of alice's workflows shows its summary, decoded by the API's codec endpoint.
    summaries = dict(zip(alice, (f"alice: read {r} for 15m" for r in (LOGS, ORDERS, LOGS)), strict=True))
    for request_id, summary in summaries.items():
        await page.goto(listing)
        await page.get_by_role("link", name=workflow_id(request_id), exact=True).click()
        await page.get_by_role("tab", name="User Metadata").click()
        # Summary and details are rendered (as markdown) in iframes, the summary first.
        await expect(page.frame_locator("main iframe").first.get_by_text(summary)).to_be_visible()
        if request_id == alice[1]:
            await page.set_viewport_size({"width": 1600, "height": 780})  # down to the details
            await expect(page.frame_locator("main iframe").nth(1).get_by_text("Reason: INC-42")).to_be_visible()
            await page.screenshot(path=str(shots / "temporal-ui-request.png"))
