"""The example policies (config/policies on config/catalog.yaml) deciding through the API and the CLI.

Against the real stack (``example_stack``: Temporal dev server, worker, API over
HTTP). The policies' clock is pinned to a Wednesday noon UTC, so the example's
business-hours rule for production writes never depends on when the tests run;
``stack.clock.at`` moves it where a test needs another day.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx

from core.temporal import SA_BREAK_GLASS, SA_REVIEW, workflow_id
from policy import load_engine
from tests.conftest import EXAMPLE_CATALOG, EXAMPLE_POLICIES, Stack
from tests.test_cli import jit
from workflows.access_request import AccessRequestWorkflow

ORDERS = "postgres:orders/public.orders"
CUSTOMERS = "postgres:orders/public.customers"
LOGS = "k8s:prod/logs"
STAGING = "postgres:orders-staging/public.orders"
SATURDAY_NOON = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
VERSION = load_engine(EXAMPLE_POLICIES, EXAMPLE_CATALOG).version


def fresh(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"  # the Temporal server is shared between tests


async def post(stack: Stack, who: dict[str, str], path: str = "/v1/requests", **body: Any) -> httpx.Response:
    payload = {"resource": ORDERS, "action": "read", "duration": "15m", "reason": "INC-123: refund stuck", **body}
    return await stack.http.post(path, json=payload, headers=who)


async def created(stack: Stack, who: dict[str, str], **body: Any) -> dict[str, Any]:
    response = await post(stack, who, **body)
    assert response.status_code == 201, response.text
    return response.json()


async def act(stack: Stack, who: dict[str, str], request_id: str, verb: str, **body: Any) -> httpx.Response:
    return await stack.http.post(f"/v1/requests/{request_id}/{verb}", json=body, headers=who)


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    return response.json()["error"]


async def listed_ids(stack: Stack, path: str, who: dict[str, str], *, want: str, present: bool) -> list[str]:
    """The ids ``path`` lists once ``want`` is (or is no longer) among them: visibility lags a little."""
    ids: list[str] = []
    for _ in range(200):
        response = await stack.http.get(path, headers=who)
        assert response.status_code == 200, response.text
        ids = [i["id"] for i in response.json()["items"]]
        if (want in ids) == present:
            return ids
        await asyncio.sleep(0.05)
    return ids


# -- filing: auto-approval, stages, time of day -------------------------------------------


async def test_oncall_read_is_approved_at_once(example_stack: Stack) -> None:
    stack = example_stack
    view = await created(stack, stack.auth(fresh("olga"), "oncall"), duration="30m")
    assert view["status"] == "active", view
    assert (view["approvals_required"], view["approvals"], view["stage"]) == (0, [], None)
    assert any("oncall-auto-read" in r for r in view["policy_reasons"]), view["policy_reasons"]
    assert view["policy_version"] == VERSION

    # Over 30m on-call still may read, but a db-owner approves.
    longer = await created(stack, stack.auth(fresh("olga"), "oncall"), duration="45m")
    assert longer["status"] == "pending"
    assert (longer["stage"], longer["eligible_groups"]) == ("approval", ["db-owners"])


async def test_write_needs_two_stages_from_two_teams(example_stack: Stack) -> None:
    stack = example_stack
    alice = stack.auth(fresh("alice"), "engineers")
    view = await created(stack, alice, action="write", duration="20m", ticket="CHG-1")
    assert view["status"] == "pending", view
    assert view["approvals_required"] == 2
    assert view["approver_groups"] == ["db-owners", "data-owners"]
    assert (view["stage"], view["eligible_groups"]) == ("db-owners", ["db-owners"])

    # A data-owner cannot jump the queue: stage one is the db-owners'.
    early = await act(stack, stack.auth("dave", "data-owners", mfa=True), view["id"], "approve")
    assert "db-owners" in error_of(early, 403)["message"]

    first = await act(stack, stack.auth("bob", "db-owners", mfa=True), view["id"], "approve", comment="schema ok")
    assert first.status_code == 200, first.text
    assert (first.json()["status"], first.json()["stage"]) == ("pending", "data-owners")

    # A second db-owner is not a second team.
    carol = await act(stack, stack.auth("carol", "db-owners", mfa=True), view["id"], "approve")
    assert "data-owners" in error_of(carol, 403)["message"]

    second = await act(stack, stack.auth("dave", "data-owners", mfa=True), view["id"], "approve")
    assert second.status_code == 200, second.text
    done = second.json()
    assert done["status"] == "active"
    assert [(a["approver"], a["stage"]) for a in done["approvals"]] == [("bob", "db-owners"), ("dave", "data-owners")]
    assert all(any("stage-approvers" in p for p in a["permitted_by"]) for a in done["approvals"])


async def test_write_needs_a_ticket_and_business_hours(example_stack: Stack) -> None:
    stack = example_stack
    alice = stack.auth(fresh("alice"), "engineers")
    no_ticket = await post(stack, alice, action="write", duration="20m")
    assert error_of(no_ticket, 422)["field"] == "ticket"

    stack.clock.at = SATURDAY_NOON
    weekend = await post(stack, alice, action="write", duration="20m", ticket="CHG-1")
    error = error_of(weekend, 403)
    assert "production-writes-in-business-hours" in error["message"] and "field" not in error
    # Break glass is the way in an emergency: for SRE, with MFA.
    sam = stack.auth(fresh("sam"), "sre", mfa=True)
    glass = await post(
        stack, sam, "/v1/requests/preview", action="write", duration="20m", ticket="INC-9", break_glass=True
    )
    assert glass.status_code == 200, glass.text
    assert (glass.json()["allowed"], glass.json()["break_glass"]) == (True, True)


async def test_a_retry_is_answered_with_the_request_even_once_refused(example_stack: Stack) -> None:
    stack = example_stack
    alice = {**stack.auth(fresh("alice"), "engineers"), "Idempotency-Key": uuid.uuid4().hex}
    first = await created(stack, alice, action="write", duration="20m", ticket="CHG-1")
    stack.clock.at = SATURDAY_NOON  # the same request would now be refused...
    retry = await post(stack, alice, action="write", duration="20m", ticket="CHG-1")
    assert retry.status_code == 200, retry.text  # ...but this one was filed on Wednesday
    assert retry.json()["id"] == first["id"]
    other = await post(stack, alice, action="write", duration="25m", ticket="CHG-1")
    assert error_of(other, 409)["field"] == "Idempotency-Key"


async def test_refusals_name_the_field_or_the_policy(example_stack: Stack) -> None:
    stack = example_stack
    contractor = stack.auth(fresh("cora"), "contractors")
    too_long = error_of(await post(stack, contractor, duration="30m"), 422)
    assert too_long["field"] == "duration" and "the 15m you may request" in too_long["message"]
    restricted = error_of(await post(stack, contractor, resource=CUSTOMERS, ticket="INC-1"), 403)
    assert "no policy permits" in restricted["message"]
    unknown = error_of(await post(stack, contractor, resource="postgres:nope"), 422)
    assert unknown["field"] == "resource"


# -- approving: MFA in production ----------------------------------------------------------


async def test_approving_production_needs_mfa(example_stack: Stack) -> None:
    stack = example_stack
    view = await created(stack, stack.auth(fresh("alice"), "engineers"))
    assert view["status"] == "pending"

    refused = await act(stack, stack.auth("bob", "db-owners"), view["id"], "approve")
    assert "MFA" in error_of(refused, 403)["message"]
    denied = await act(stack, stack.auth("bob", "db-owners"), view["id"], "deny", reason="no")
    assert "MFA" in error_of(denied, 403)["message"]
    unchanged = (await stack.http.get(f"/v1/requests/{view['id']}", headers=stack.auth("bob", "db-owners"))).json()
    assert (unchanged["status"], unchanged["approvals"]) == ("pending", [])

    approved = await act(stack, stack.auth("bob", "db-owners", mfa=True), view["id"], "approve")
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "active"
    assert any("stage-approvers" in p for p in approved.json()["approvals"][0]["permitted_by"])


async def test_staging_needs_no_mfa_to_approve(example_stack: Stack) -> None:
    stack = example_stack
    view = await created(stack, stack.auth(fresh("alice"), "engineers"), resource=STAGING)
    approved = await act(stack, stack.auth("bob", "db-owners"), view["id"], "approve")
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "active"


# -- revoke, audit ------------------------------------------------------------------------------


async def test_revoke_by_admins_per_policy_and_audit_scope(example_stack: Stack) -> None:
    stack = example_stack
    alice = stack.auth(fresh("alice"), "engineers")
    view = await created(stack, stack.auth(fresh("olga"), "oncall"), duration="10m")
    assert view["status"] == "active"

    # Who may not see it gets 404; an auditor sees it (Cedar "audit") but may not revoke.
    assert (await stack.http.get(f"/v1/requests/{view['id']}", headers=alice)).status_code == 404
    erin = stack.auth("erin", "auditors")
    assert (await stack.http.get(f"/v1/requests/{view['id']}", headers=erin)).status_code == 200
    assert "no policy permits" in error_of(await act(stack, erin, view["id"], "revoke", reason="x"), 403)["message"]

    revoked = await act(stack, stack.auth("root", "jit-admins"), view["id"], "revoke", reason="incident over")
    assert revoked.status_code == 200, revoked.text
    assert (revoked.json()["status"], revoked.json()["revocation"]["actor"]) == ("revoked", "root")


# -- break-glass and its review ---------------------------------------------------------------


async def test_break_glass_is_active_at_once_and_reviewed_afterwards(example_stack: Stack) -> None:
    stack = example_stack
    sam_name = fresh("sam")
    sam = stack.auth(sam_name, "sre", mfa=True)

    without_mfa = await post(stack, stack.auth(sam_name, "sre"), break_glass=True, duration="30m")
    assert error_of(without_mfa, 422)["field"] == "mfa"
    engineer = await post(stack, stack.auth(fresh("alice"), "engineers", mfa=True), break_glass=True)
    assert "no policy permits" in error_of(engineer, 403)["message"]

    view = await created(stack, sam, break_glass=True, duration="30m", reason="INC-9: orders down")
    assert view["status"] == "active", view
    assert (view["break_glass"], view["review_pending"], view["approvals_required"]) == (True, True, 0)
    handle = stack.client.get_workflow_handle_for(AccessRequestWorkflow.run, workflow_id(view["id"]))
    attributes = (await handle.describe()).typed_search_attributes
    assert attributes.get(SA_BREAK_GLASS) is True
    assert attributes.get(SA_REVIEW) == "pending"

    # The grant ends; the request stays open, and listed, until reviewed.
    revoked = await act(stack, sam, view["id"], "revoke", reason="fixed")
    assert revoked.json()["status"] == "revoked", revoked.text
    assert revoked.json()["review_pending"] is True
    bob = stack.auth("bob", "db-owners")  # the resource's first-stage approvers review it
    assert view["id"] in await listed_ids(stack, "/v1/reviews", bob, want=view["id"], present=True)
    erin = stack.auth("erin", "auditors")
    assert view["id"] in await listed_ids(stack, "/v1/reviews", erin, want=view["id"], present=True)
    stranger = await stack.http.get("/v1/reviews", headers=stack.auth(fresh("mallory"), "engineers"))
    assert view["id"] not in [i["id"] for i in stranger.json()["items"]]

    own = await act(stack, sam, view["id"], "acknowledge", comment="all good")
    assert "your own" in error_of(own, 403)["message"]
    auditor = await act(stack, erin, view["id"], "acknowledge")
    assert error_of(auditor, 403)["message"].startswith("only members of db-owners")

    acknowledged = await act(stack, bob, view["id"], "acknowledge", comment="justified: INC-9")
    assert acknowledged.status_code == 200, acknowledged.text
    reviewed = acknowledged.json()
    assert (reviewed["status"], reviewed["review_pending"]) == ("revoked", False)
    assert (reviewed["review"]["actor"], reviewed["review"]["reason"]) == ("bob", "justified: INC-9")
    final = await handle.result()  # the workflow ends once reviewed
    assert final.review is not None and final.review.actor == "bob"
    assert view["id"] not in await listed_ids(stack, "/v1/reviews", bob, want=view["id"], present=False)
    again = await act(stack, bob, view["id"], "acknowledge")
    assert error_of(again, 409)


async def test_acknowledge_is_only_for_break_glass(example_stack: Stack) -> None:
    stack = example_stack
    view = await created(stack, stack.auth(fresh("olga"), "oncall"), duration="10m")
    response = await act(stack, stack.auth("root", "jit-admins"), view["id"], "acknowledge")
    assert "break-glass" in error_of(response, 409)["message"]


# -- preview, catalog, version --------------------------------------------------------------


async def test_preview_decides_without_starting_anything(example_stack: Stack) -> None:
    stack = example_stack
    name = fresh("alice")
    alice = stack.auth(name, "engineers")
    ok = await post(stack, alice, "/v1/requests/preview", action="write", duration="20m", ticket="CHG-1")
    assert ok.status_code == 200, ok.text
    preview = ok.json()
    assert (preview["allowed"], preview["auto_approve"], preview["break_glass"]) == (True, False, False)
    assert [s["name"] for s in preview["stages"]] == ["db-owners", "data-owners"]
    assert preview["stages"][1]["escalate_to"] == ["data-leads"]
    assert (preview["max_duration_s"], preview["duration_s"], preview["policy_version"]) == (1800, 1200, VERSION)

    too_long = (await post(stack, alice, "/v1/requests/preview", action="write", duration="45m", ticket="C")).json()
    assert (too_long["allowed"], too_long["field"], too_long["max_duration_s"]) == (False, "duration", 1800)
    assert too_long["duration_s"] == 1800  # what the same request may have
    auto = (await post(stack, stack.auth(fresh("olga"), "oncall"), "/v1/requests/preview", duration="10m")).json()
    assert (auto["allowed"], auto["auto_approve"], auto["stages"]) == (True, True, [])

    # Nothing was started: the one real request is the only one of this user.
    real = await created(stack, alice)
    mine = await listed_ids(stack, "/v1/requests?mine=true", alice, want=real["id"], present=True)
    assert mine == [real["id"]]


async def test_catalog_lists_what_the_caller_may_request(example_stack: Stack) -> None:
    stack = example_stack

    async def catalog(*groups: str, mfa: bool = False) -> dict[tuple[str, str], dict[str, Any]]:
        response = await stack.http.get("/v1/catalog", headers=stack.auth(fresh("u"), *groups, mfa=mfa))
        assert response.status_code == 200, response.text
        return {(v["resource"], a["action"]): a for v in response.json() for a in v["actions"]}

    contractor = await catalog("contractors")
    assert sorted(contractor) == sorted([(ORDERS, "read"), (LOGS, "read"), (STAGING, "read")])
    assert {a["max_duration_s"] for a in contractor.values()} == {900}
    assert contractor[ORDERS, "read"]["approvals_required"] == 1

    engineer = await catalog("engineers")
    assert engineer[ORDERS, "write"]["max_duration_s"] == 1800
    assert [s["name"] for s in engineer[ORDERS, "write"]["stages"]] == ["db-owners", "data-owners"]
    assert engineer[ORDERS, "write"]["require_ticket"] is True

    oncall = await catalog("oncall")
    assert (oncall[ORDERS, "read"]["auto_approve"], oncall[ORDERS, "read"]["auto_approve_max_s"]) == (True, 1800)

    sre = await catalog("sre", mfa=True)
    assert (sre[ORDERS, "read"]["max_duration_s"], sre[ORDERS, "read"]["break_glass_max_s"]) == (0, 3600)
    assert await catalog("sre") == {}  # break-glass needs MFA: without it, nothing
    assert await catalog() == {}


async def test_policy_version_is_recorded_and_shown(example_stack: Stack) -> None:
    stack = example_stack
    alice = stack.auth(fresh("alice"), "engineers")
    view = await created(stack, alice)
    assert view["policy_version"] == VERSION == stack.app.state.policies.version
    shown = await stack.http.get(f"/v1/requests/{view['id']}", headers=alice)
    assert shown.json()["policy_version"] == VERSION
    assert any("engineers-read" in r for r in shown.json()["policy_reasons"])


# -- the CLI -------------------------------------------------------------------------------


async def test_cli_dry_run_mfa_break_glass_and_reviews(example_stack: Stack) -> None:
    stack = example_stack

    async def run(*args: str, **env: str):  # type: ignore[no-untyped-def]
        return await jit(*args, server=stack.base_url, data_dir=stack.settings.data_dir, **env)

    alice = ("--as", fresh("alice"), "--group", "engineers")
    write = ("--action", "write", "--for", "20m", "--reason", "r", "--ticket", "CHG-1")
    dry = await run(*alice, "request", ORDERS, *write, "--dry-run")
    assert dry.code == 0, dry.err
    assert "allowed:   yes" in dry.out
    assert (
        "approval:  db-owners (1 of db-owners), then data-owners (1 of data-owners; after 30m also data-leads)"
        in dry.out
    )
    assert "duration:  20m (you may ask for up to 30m)" in dry.out
    assert f"policy:    {VERSION}" in dry.out

    filed = await run(*alice, "request", ORDERS, "--action", "read", "--for", "15m", "--reason", "INC-1")
    assert filed.code == 0, filed.err
    request_id = filed.out.split()[0]
    no_mfa = await run("--as", "bob", "--group", "db-owners", "approve", request_id)
    assert no_mfa.code == 1 and no_mfa.err.startswith("jit: 403 forbidden: ") and "MFA" in no_mfa.err
    token = await run("dev-token", "bob", "--group", "db-owners", "--mfa")
    assert token.code == 0, token.err
    approved = await run("approve", request_id, JIT_TOKEN=token.out.strip())
    assert approved.code == 0, approved.err
    assert approved.out.startswith(f"{request_id}  active  until ")

    sam = ("--as", fresh("sam"), "--group", "sre", "--mfa")
    glass = await run(*sam, "request", ORDERS, "--action", "read", "--for", "10m", "--reason", "INC-9", "--break-glass")
    assert glass.code == 0, glass.err
    glass_id = glass.out.split()[0]
    assert glass.out.rstrip().endswith("(break-glass: review pending)")
    bob = ("--as", "bob", "--group", "db-owners")
    await listed_ids(stack, "/v1/reviews", stack.auth("bob", "db-owners"), want=glass_id, present=True)
    reviews = await run(*bob, "reviews")
    assert glass_id in reviews.out, reviews.out
    shown = await run(*bob, "show", glass_id)
    assert "review:    break-glass, review pending" in shown.out
    done = await run(*bob, "acknowledge", glass_id, "--comment", "ok")
    assert done.code == 0, done.err
    assert done.out.startswith(f"{glass_id}  active  until ")
    assert "review pending" not in done.out

    catalog = await run("--as", fresh("cora"), "--group", "contractors", "catalog")
    assert catalog.code == 0, catalog.err
    assert CUSTOMERS not in catalog.out and ORDERS in catalog.out
