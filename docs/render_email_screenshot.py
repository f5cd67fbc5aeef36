"""docs/notification-email.png: the HTML part of an approvers' email, rendered in Chromium.

    .venv/bin/python docs/render_email_screenshot.py

The email is rendered by the channel's own code (activities/channels/email_render.py)
from a sample "filed" event; Debian's chromium (``make chromium``) draws it, driven by
Playwright as in tests/test_temporal_ui.py. tests/test_email_notifications.py opens the
emails it receives through :func:`chromium_page` too.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from playwright.async_api import Page, async_playwright  # noqa: E402

from activities.channels.email_render import render  # noqa: E402
from core.notify_models import EventKind, NotificationEvent  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
OUT = ROOT / "docs" / "notification-email.png"


def html_part(mail: EmailMessage) -> str:
    part = mail.get_body(("html",))
    assert part is not None, "no HTML part"
    return part.get_content()


@asynccontextmanager
async def chromium_page(html: str) -> AsyncIterator[Page]:
    """``html`` loaded in a headless Chromium page, scripts and network off, as a careful mail client shows it."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(
                viewport={"width": 760, "height": 600}, java_script_enabled=False, offline=True
            )
            page = await context.new_page()
            await page.set_content(html, wait_until="load")
            yield page
        finally:
            await browser.close()


def sample() -> EmailMessage:
    event = NotificationEvent(
        id="3f9c2a7e-5b1d-4c8e-9a0f-2d6b7e1c4a58:1:filed",
        kind=EventKind.FILED,
        at=datetime(2026, 11, 25, 12, 0, tzinfo=UTC),
        request_id="3f9c2a7e-5b1d-4c8e-9a0f-2d6b7e1c4a58",
        requester="alice",
        resource="postgres:orders/public.orders",
        action="read",
        duration_s=3600,
        reason="INC-4711: orders stuck in <pending>; checking the last hour's writes",
        ticket="INC-4711",
        status="pending",
        environment="prod",
        policy_reasons=["production data: one approval from db-owners"],
        groups=["db-owners"],
        approvals_needed=1,
        url="https://jit.example.com/ui/requests/3f9c2a7e-5b1d-4c8e-9a0f-2d6b7e1c4a58",
    )
    return render(event, sender="jit-access@example.com", to="db-owners@example.com")


async def main(out: Path = OUT) -> None:
    async with chromium_page(html_part(sample())) as page:
        await page.screenshot(path=str(out), full_page=True)
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    asyncio.run(main())
