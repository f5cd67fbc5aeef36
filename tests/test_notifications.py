"""Notifications through the lifecycle, on the console channel: who hears what, and when."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from tests.conftest import Stack, running_stack
from tests.e2e_support import wait_until

ORDERS = "postgres:orders/public.orders"
CONSOLE = """
channels:
  console: {type: console}
routes:
  - {audience: approvers, to: [console]}
  - {audience: requester, to: [console]}
  - {audience: security, to: [console]}
"""


@pytest.fixture
async def notifying(dev_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Stack]:
    config = tmp_path / "notifications.yaml"
    config.write_text(CONSOLE)
    async with running_stack(dev_env, tmp_path / "data", notifications_path=config) as stack:
        yield stack


class Console:
    """What the worker printed so far (the console channel writes to stdout)."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self._capsys = capsys
        self.text = ""

    async def shows(self, *needles: str) -> str:
        async def check() -> str | None:
            self.text += self._capsys.readouterr().out
            return self.text if all(n in self.text for n in needles) else None

        return await wait_until(check, timeout=60, what=f"console output with {needles}")


async def test_approvers_then_requester_hear_of_each_step(notifying: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    stack, console = notifying, Console(capsys)
    body = {"resource": ORDERS, "action": "read", "duration": "PT15M", "reason": "debugging INC-7"}
    filed = await stack.http.post("/v1/requests", json=body, headers=stack.auth("alice", "engineers"))
    assert filed.status_code == 201, filed.text
    rid = filed.json()["id"]
    await console.shows("notification to db-owners (filed)", "alice asks for read on postgres:orders/public.orders")
    assert f"jit approve {rid[:8]}" in console.text
    # The link leads to the request's page, through sign-in when needed.
    link = f"{stack.settings.public_url}/ui/requests/{rid}"
    assert link in console.text
    page = await stack.http.get(link.replace(stack.settings.public_url, ""))
    assert page.status_code in (302, 303, 307) and f"next=%2Fui%2Frequests%2F{rid}" in page.headers["location"]
    assert "notification to requester" not in console.text  # nothing for alice yet

    approved = await stack.http.post(
        f"/v1/requests/{rid}/approve", json={"comment": "ok"}, headers=stack.auth("bob", "db-owners")
    )
    assert approved.json()["status"] == "active"
    await console.shows("notification to requester (active)", "Approved by: bob")
    assert "notification to requester (approved)" not in console.text  # one message: active, approved by bob
    assert f"jit token {rid[:8]}" in console.text

    creds = await stack.http.get(f"/v1/requests/{rid}/credentials", headers=stack.auth("alice", "engineers"))
    token = creds.json()["access_token"]
    await stack.http.post(f"/v1/requests/{rid}/revoke", json={"reason": "done here"}, headers=stack.auth("alice"))
    text = await console.shows("notification to requester (revoked)", "done here")
    assert token not in text  # never a credential in a message
