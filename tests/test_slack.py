"""Slack: Block Kit messages with Approve / Deny, clicks verified and decided, the message updated in place.

Against the real stack on the example catalog and policies (approving in
production needs MFA; the staging orders table does not), with a local fake of
Slack (tests/slack_fake.py) that slack-sdk talks to over HTTP through the
channel's ``base_url``, and clicks signed as Slack signs them.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from activities.channels.slack import SlackConfigError, SlackSender
from core.notify_config import SlackChannel
from core.notify_models import Delivery, EventKind, MessageRef, NotificationEvent, Route
from tests.conftest import EXAMPLE_CATALOG, EXAMPLE_POLICIES, Stack, running_stack
from tests.e2e_support import wait_until
from tests.slack_fake import Call, FakeSlack, click_body, fake_slack, response_url_of, sign

SECRET = "8f14e45fceea167a5a36dedd4bea2543"  # noqa: S105 - the test app's signing secret
TOKEN = "xoxb-test-0123456789"  # noqa: S105 - the fake accepts any xoxb- token
STAGING = "postgres:orders-staging/public.orders"
PRODUCTION = "postgres:orders/public.orders"
APPROVE, DENY = "jit_approve", "jit_deny"
INTERACTIONS = "/v1/slack/interactions"

CONFIG = """
channels:
  slack: {{type: slack, base_url: "{api_url}", timeout_s: 5}}
routes:
  - {{audience: approvers, to: [{{channel: slack, target: C0DBOWNERS}}]}}
  - {{audience: requester, to: [slack]}}
users:
  - {{sub: alice, slack: UALICE, groups: [engineers]}}
  - {{sub: bob, slack: UBOB, groups: [db-owners]}}
  - {{sub: carol, slack: UCAROL, groups: [engineers]}}
  - {{sub: dave, email: dave@example.com, groups: [db-owners]}}
"""


@dataclass
class SlackStack:
    stack: Stack
    slack: FakeSlack

    async def file(self, resource: str, reason: str = "debugging INC-7") -> str:
        body = {"resource": resource, "action": "read", "duration": "PT15M", "reason": reason}
        filed = await self.stack.http.post("/v1/requests", json=body, headers=self.stack.auth("alice", "engineers"))
        assert filed.status_code == 201, filed.text
        rid: str = filed.json()["id"]
        await self.approvers_message(rid)
        return rid

    async def approvers_message(self, rid: str) -> Call:
        async def posted() -> Call | None:
            return next((c for c in self.slack.posted("chat.postMessage") if _buttons(c) and rid in str(c.args)), None)

        return await wait_until(posted, timeout=60, what=f"the approvers' Slack message for {rid}")

    async def click(self, action: str, rid: str, user: str, *, at: int | None = None) -> tuple[int, str]:
        """A signed click; the HTTP status and the response_url it carried."""
        url = self.slack.response_url()
        body = click_body(action, rid, user, url)
        resp = await self.stack.http.post(INTERACTIONS, content=body, headers=sign(SECRET, body, at))
        return resp.status_code, url

    async def answer(self, action: str, rid: str, user: str) -> str:
        """Click, and the ephemeral text the clicker gets back."""
        status, url = await self.click(action, rid, user)
        assert status == 200

        async def answered() -> list[dict[str, Any]]:
            return self.slack.answered(url)

        (reply,) = await wait_until(answered, timeout=60, what=f"the answer to {user}'s {action}")
        assert reply["response_type"] == "ephemeral"
        return str(reply["text"])

    async def status(self, rid: str) -> str:
        view = await self.stack.http.get(f"/v1/requests/{rid}", headers=self.stack.auth("alice", "engineers"))
        return str(view.json()["status"])


def _buttons(call: Call) -> list[dict[str, Any]]:
    return [e for b in call.args.get("blocks", []) if b["type"] == "actions" for e in b["elements"] if "value" in e]


def _texts(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every text object of ``blocks``."""
    found: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") in ("plain_text", "mrkdwn") and "text" in node:
                found.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(blocks)
    return found


@pytest.fixture
async def slack(
    dev_env: WorkflowEnvironment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[SlackStack]:
    monkeypatch.setenv("JIT_SLACK_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("JIT_SLACK_SIGNING_SECRET", SECRET)
    with fake_slack() as fake:
        config = tmp_path / "notifications.yaml"
        config.write_text(CONFIG.format(api_url=fake.api_url))
        async with running_stack(
            dev_env,
            tmp_path / "data",
            notifications_path=config,
            catalog_path=EXAMPLE_CATALOG,
            policies_dir=EXAMPLE_POLICIES,
        ) as stack:
            yield SlackStack(stack, fake)


async def test_a_click_approves_and_the_message_is_updated_in_place(slack: SlackStack) -> None:
    rid = await slack.file(STAGING, reason="<!channel> *x* <http://evil.example|click> & more")
    message = await slack.approvers_message(rid)
    assert message.args["channel"] == "C0DBOWNERS" and message.token == TOKEN
    assert [(b["action_id"], b["value"]) for b in _buttons(message)] == [(APPROVE, rid), (DENY, rid)]
    texts = _texts(message.args["blocks"])
    # The reason arrives as text Slack shows as typed: plain_text, never mrkdwn that formats or pings.
    assert any(
        t["type"] == "plain_text" and t["text"] == "<!channel> *x* <http://evil.example|click> & more" for t in texts
    )
    for t in texts:
        if t["type"] == "mrkdwn":
            assert "<!" not in t["text"] and "*x*" not in t["text"] and "<http" not in t["text"], t

    text = await slack.answer(APPROVE, rid, "UBOB")
    assert f"You approved request `{rid[:8]}`" in text
    assert await slack.status(rid) == "active"

    ts = message.answer["ts"]

    async def updated() -> Call | None:
        return next((c for c in slack.slack.posted("chat.update") if c.args["ts"] == ts), None)

    update = await wait_until(updated, timeout=60, what="chat.update of the approvers' message")
    assert update.args["channel"] == "C0DBOWNERS"
    shown = " ".join(t["text"] for t in _texts(update.args["blocks"]))
    assert "Approved" in shown and "bob" in shown and "approved in Slack" in shown
    assert not _buttons(update)  # decided: no buttons any more

    # The requester hears in a direct message (their Slack user id).
    async def dm() -> Call | None:
        return next((c for c in slack.slack.posted("chat.postMessage") if c.args["channel"] == "UALICE"), None)

    assert not _buttons(await wait_until(dm, timeout=60, what="alice's DM"))

    # A second click after the decision changes nothing, and says why.
    again = await slack.answer(DENY, rid, "UBOB")
    assert f"Request `{rid[:8]}` was not changed" in again and "active" in again
    assert await slack.status(rid) == "active"


async def test_clicks_that_must_change_nothing(slack: SlackStack) -> None:
    rid = await slack.file(STAGING)
    own = await slack.answer(APPROVE, rid, "UALICE")
    assert "cannot approve" in own and "your own request" in own
    stranger = await slack.answer(APPROVE, rid, "UCAROL")
    assert "You cannot approve" in stranger and "Nothing was changed" in stranger
    unknown = await slack.answer(APPROVE, rid, "UNOBODY")
    assert "not linked to a jit-access identity" in unknown and "UNOBODY" in unknown
    assert await slack.status(rid) == "pending"

    # Production: approving needs MFA, which a click cannot show; the answer gives the command.
    prod = await slack.file(PRODUCTION)
    mfa = await slack.answer(APPROVE, prod, "UBOB")
    assert "need MFA" in mfa and f"jit approve {prod[:8]}" in mfa
    assert await slack.status(prod) == "pending"

    # Deny from Slack, with its reason.
    denied = await slack.answer(DENY, rid, "UBOB")
    assert f"You denied request `{rid[:8]}`" in denied
    view = await slack.stack.http.get(f"/v1/requests/{rid}", headers=slack.stack.auth("alice", "engineers"))
    assert view.json()["status"] == "denied"
    assert "denied in Slack" in view.text

    async def updated() -> Call | None:
        return next((c for c in slack.slack.posted("chat.update") if rid in str(c.args)), None)

    shown = " ".join(
        t["text"] for t in _texts((await wait_until(updated, timeout=60, what="chat.update")).args["blocks"])
    )
    assert "Denied" in shown and "bob" in shown and "denied in Slack" in shown


async def test_a_slack_user_is_found_by_email_when_not_listed_by_id(slack: SlackStack) -> None:
    slack.slack.emails["UDAVE"] = "Dave@Example.com"  # what Slack's users.info says of UDAVE
    rid = await slack.file(STAGING)
    done = await slack.answer(APPROVE, rid, "UDAVE")
    assert f"You approved request `{rid[:8]}`" in done
    view = await slack.stack.http.get(f"/v1/requests/{rid}", headers=slack.stack.auth("alice", "engineers"))
    assert [a["approver"] for a in view.json()["approvals"]] == ["dave"]
    stranger = await slack.answer(APPROVE, await slack.file(STAGING), "UNOEMAIL")
    assert "not linked to a jit-access identity" in stranger


async def test_unsigned_old_and_replayed_calls_are_refused(slack: SlackStack) -> None:
    rid = await slack.file(STAGING)
    body = click_body(APPROVE, rid, "UBOB", slack.slack.response_url())
    http = slack.stack.http

    wrong = await http.post(INTERACTIONS, content=body, headers=sign("not-the-secret", body))
    assert wrong.status_code == 401 and "signature does not match" in wrong.json()["error"]["message"]
    unsigned = await http.post(
        INTERACTIONS, content=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert unsigned.status_code == 401
    old, _ = await slack.click(APPROVE, rid, "UBOB", at=int(time.time()) - 6 * 60)
    assert old == 401

    # Malformed, not a server error: a 401 saying so.
    for bad in ({"X-Slack-Request-Timestamp": "soon", "X-Slack-Signature": "v0=00"}, {"X-Slack-Signature": "x"}):
        refused = await http.post(INTERACTIONS, content=body, headers=bad)
        assert refused.status_code == 401, refused.text
    not_utf8 = b"payload=\xff\xfe"
    assert (await http.post(INTERACTIONS, content=not_utf8, headers=sign(SECRET, not_utf8))).status_code == 401
    no_payload = b"token=x"
    missing = await http.post(INTERACTIONS, content=no_payload, headers=sign(SECRET, no_payload))
    assert missing.status_code == 400 and missing.json()["error"]["field"] == "payload"

    headers = sign(SECRET, body)
    first = await http.post(INTERACTIONS, content=body, headers=headers)
    assert first.status_code == 200
    replay = await http.post(INTERACTIONS, content=body, headers=headers)
    assert replay.status_code == 401 and "replayed" in replay.json()["error"]["message"]

    # Only the first was taken: one answer, one approval.
    async def answered() -> list[dict[str, Any]]:
        return slack.slack.answered(response_url_of(body))

    await wait_until(answered, timeout=60, what="the answer to the one accepted click")
    assert await slack.status(rid) == "active"
    view = await http.get(f"/v1/requests/{rid}", headers=slack.stack.auth("alice", "engineers"))
    assert [a["approver"] for a in view.json()["approvals"]] == ["bob"]


async def test_no_slack_channel_no_interactions(stack: Stack) -> None:
    body = click_body(APPROVE, "0000", "UBOB", "http://127.0.0.1:9/x")
    resp = await stack.http.post(INTERACTIONS, content=body, headers=sign(SECRET, body))
    assert resp.status_code == 404


def test_a_missing_bot_token_is_named_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JIT_SLACK_TEST_TOKEN", raising=False)
    with pytest.raises(SlackConfigError, match="environment variable JIT_SLACK_TEST_TOKEN, which is not set"):
        SlackSender(SlackChannel(type="slack", token_env="JIT_SLACK_TEST_TOKEN"))


def test_the_fallback_text_is_escaped_and_a_decided_message_is_updated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JIT_SLACK_BOT_TOKEN", TOKEN)
    event = NotificationEvent(
        id="r1:1:filed",
        kind=EventKind.FILED,
        at=datetime.now(UTC),
        request_id="3f0c1a2b-0000-4000-8000-000000000000",
        requester="mallory <!here> *b*",
        resource=STAGING,
        action="read",
        duration_s=900,
        reason="x",
        status="pending",
    )
    route = Route(channel="slack", audience="group:db-owners", target="C0DBOWNERS")
    with fake_slack() as fake:
        sender = SlackSender(SlackChannel(type="slack", base_url=fake.api_url))
        ref = sender.send(Delivery(route=route, event=event))
        (posted,) = fake.posted("chat.postMessage")
        assert posted.args["text"].startswith("mallory &lt;!here&gt; *b* asks for read")  # no ping in the notification
        assert ref == MessageRef(channel="slack", target="C0DBOWNERS", ts=posted.answer["ts"])

        decided = event.model_copy(update={"kind": EventKind.DECIDED, "status": "denied", "actor": "bob"})
        assert sender.send(Delivery(route=route, event=decided, ref=ref)) == ref
        (update,) = fake.posted("chat.update")
        assert (update.args["channel"], update.args["ts"]) == ("C0DBOWNERS", ref.ts)
        assert update.args["blocks"][0]["text"]["text"].startswith("Denied: mallory")
        assert not _buttons(update)

        # Not an approvers' message: nothing to update later.
        active = event.model_copy(update={"kind": EventKind.ACTIVE, "status": "active"})
        assert (
            sender.send(Delivery(route=Route(channel="slack", audience="requester", target="UX"), event=active)) is None
        )
