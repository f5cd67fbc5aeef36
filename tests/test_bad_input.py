"""Bad input against the real stack: every refusal is a 4xx in the error shape, and leaves nothing behind.

Each rejected create is sent with an ``Idempotency-Key``, so the id the request
*would* have had is known: ``describe`` on that workflow id must answer
NOT_FOUND (strongly consistent), and ``GET /v1/requests?mine=true`` for that
(fresh) user must stay empty.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from temporalio.service import RPCError, RPCStatusCode

from api.new_requests import _IDEMPOTENCY_NS
from core.dev_identity import mint_dev_token
from core.temporal import workflow_id
from tests.conftest import Stack, make_settings, serve_api

ORDERS = "postgres:orders/public.orders"  # 1 approval of db-owners, max 2h
CUSTOMERS = "postgres:orders/public.customers"  # 2 approvals of db-owners/privacy, max 30m
LOGS = "k8s:prod/logs"  # auto-approved, max 4h

MISSING = object()
VALID = {"resource": ORDERS, "action": "read", "duration": "PT15M", "reason": "debugging INC-1"}


def raw_jwt(header: object, payload: object, signature: bytes = b"sig") -> str:
    """A JWT-shaped string PyJWT would refuse to build."""

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    return ".".join([part(json.dumps(header).encode()), part(json.dumps(payload).encode()), part(signature)])


def fresh_user() -> str:
    return f"u-{uuid.uuid4().hex[:12]}"


def assert_error(
    response: httpx.Response, status: int, *, code: str | None = None, field: str | None = None, says: str | None = None
) -> dict[str, Any]:
    """The contract: ``{"error": {"code", "message", "field"?}}`` and nothing else."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) <= {"code", "message", "field"}, error
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    assert "Traceback" not in error["message"]
    if code is not None:
        assert error["code"] == code, error
    if field is not None:
        assert error.get("field") == field, error
        assert field in error["message"], f"message should name the field: {error}"
    if says is not None:
        assert says.lower() in error["message"].lower(), error
    return error


def body_with(**changes: object) -> dict[str, object]:
    body = dict(VALID)
    for name, value in changes.items():
        if value is MISSING:
            body.pop(name, None)
        else:
            body[name] = value
    return body


async def assert_nothing_started(stack: Stack, user: str, key: str) -> None:
    would_be = str(uuid.uuid5(_IDEMPOTENCY_NS, f"{user}\n{key}"))
    with pytest.raises(RPCError) as raised:
        await stack.client.get_workflow_handle(workflow_id(would_be)).describe()
    assert raised.value.status == RPCStatusCode.NOT_FOUND
    mine = await stack.http.get("/v1/requests", params={"mine": "true"}, headers=stack.auth(user, "engineers"))
    assert mine.status_code == 200, mine.text
    assert mine.json()["items"] == []


async def visible_count(stack: Stack, user: str, *, at_least: int) -> int:
    """Requests of ``user`` in the visibility store, once it has caught up to ``at_least``.

    Visibility is eventually consistent: wait for the condition (bounded), not for a time.
    """
    count = 0
    for _ in range(200):
        count = (await stack.client.count_workflows(f"JitRequester = '{user}'")).count
        if count >= at_least:
            return count
        await asyncio.sleep(0.05)
    return count


async def create(stack: Stack, user: str, *groups: str, **changes: object) -> dict[str, Any]:
    response = await stack.http.post("/v1/requests", json=body_with(**changes), headers=stack.auth(user, *groups))
    assert response.status_code == 201, response.text
    return response.json()


# -- create: malformed bodies (400) ---------------------------------------------------------

MALFORMED = [
    pytest.param(b'{"resource": ', "application/json", "not valid JSON", id="truncated-json"),
    pytest.param(b"{'resource': 'x'}", "application/json", "not valid JSON", id="single-quotes"),
    pytest.param(b"\xff\xfe{}", "application/json", None, id="not-utf8"),
    pytest.param(b"[]", "application/json", "JSON object", id="array"),
    pytest.param(b'"PT15M"', "application/json", "JSON object", id="string"),
    pytest.param(b"42", "application/json", "JSON object", id="number"),
    pytest.param(b"null", "application/json", "JSON object", id="null"),
    pytest.param(b"", "application/json", "JSON object", id="empty"),
    pytest.param(b"resource=x&action=read", "application/x-www-form-urlencoded", "JSON object", id="form"),
    pytest.param(b'{"resource": "x"}', "text/plain", "JSON object", id="text-plain"),
]


@pytest.mark.parametrize(("content", "content_type", "says"), MALFORMED)
async def test_create_with_malformed_body_is_400(
    stack: Stack, content: bytes, content_type: str, says: str | None
) -> None:
    user, key = fresh_user(), uuid.uuid4().hex
    response = await stack.http.post(
        "/v1/requests",
        content=content,
        headers={**stack.auth(user, "engineers"), "Content-Type": content_type, "Idempotency-Key": key},
    )
    assert_error(response, 400, code="bad_request", says=says)
    await assert_nothing_started(stack, user, key)


# -- create: wrong types and rule violations (422, naming the field) --------------------------

_in_31_days = (datetime.now(UTC) + timedelta(days=31)).isoformat()

INVALID = [
    # wrong types
    pytest.param({"duration": ["PT15M"]}, "duration", "ISO 8601", id="duration-list"),
    pytest.param({"duration": {"minutes": 15}}, "duration", "ISO 8601", id="duration-object"),
    pytest.param({"duration": True}, "duration", "ISO 8601", id="duration-bool"),
    pytest.param({"duration": None}, "duration", None, id="duration-null"),
    pytest.param({"reason": 42}, "reason", "must be a string", id="reason-number"),
    pytest.param({"resource": ["a"]}, "resource", "must be a string", id="resource-list"),
    pytest.param({"start_at": "tomorrow"}, "start_at", "date-time", id="start-at-text"),
    pytest.param({"ticket": 7}, "ticket", "must be a string", id="ticket-number"),
    # missing and unknown fields
    pytest.param({"resource": MISSING}, "resource", "required", id="missing-resource"),
    pytest.param({"action": MISSING}, "action", "required", id="missing-action"),
    pytest.param({"duration": MISSING}, "duration", "required", id="missing-duration"),
    pytest.param({"reason": MISSING}, "reason", "required", id="missing-reason"),
    pytest.param({"approved": True}, "approved", "not a field", id="extra-field"),
    pytest.param({"requester": "bob"}, "requester", "not a field", id="extra-requester"),
    # reason rules
    pytest.param({"reason": ""}, "reason", "must not be empty", id="reason-empty"),
    pytest.param({"reason": "   \u3000 "}, "reason", "must not be empty", id="reason-whitespace"),
    # control characters: nothing that could rewrite what a terminal shows (`jit show`)
    pytest.param({"reason": " \t\n "}, "reason", "control characters", id="reason-tab-newline"),
    pytest.param({"reason": "ok\x1b[2J\x1b[Happroved"}, "reason", "U+001B", id="reason-escape"),
    pytest.param({"reason": "routine\rStatus: approved"}, "reason", "U+000D", id="reason-carriage-return"),
    pytest.param({"reason": "line one\nline two"}, "reason", "no newlines", id="reason-newline"),
    pytest.param({"reason": "debug\x7f"}, "reason", "U+007F", id="reason-delete"),
    pytest.param({"reason": "debug\x9b2J"}, "reason", "U+009B", id="reason-c1-csi"),
    pytest.param({"reason": "nul\x00"}, "reason", "control characters", id="reason-nul"),
    pytest.param({"reason": "debug\n"}, "reason", "control characters", id="reason-trailing-newline"),
    pytest.param({"ticket": "INC-1\n"}, "ticket", "letters, digits", id="ticket-trailing-newline"),
    pytest.param({"ticket": "INC\x1b1"}, "ticket", "letters, digits", id="ticket-escape"),
    pytest.param({"resource": "k8s:prod/logs\x1b"}, "resource", "control characters", id="resource-escape"),
    pytest.param({"reason": "x" * 1001}, "reason", "at most 1000", id="reason-too-long"),
    pytest.param({"resource": " "}, "resource", "must not be empty", id="resource-blank"),
    pytest.param({"resource": "r" * 201}, "resource", "at most 200", id="resource-too-long"),
    pytest.param({"ticket": "INC 1; drop"}, "ticket", "letters, digits", id="ticket-bad-chars"),
    # durations
    pytest.param({"duration": 0}, "duration", "greater than zero", id="duration-zero"),
    pytest.param({"duration": "0"}, "duration", "greater than zero", id="duration-zero-text"),
    pytest.param({"duration": "PT0S"}, "duration", "greater than zero", id="duration-zero-iso"),
    pytest.param({"duration": -900}, "duration", "greater than zero", id="duration-negative"),
    pytest.param({"duration": "-PT15M"}, "duration", "not a duration", id="duration-negative-iso"),
    pytest.param({"duration": "P36500D"}, "duration", "too long", id="duration-100-years"),
    pytest.param({"duration": 100 * 365 * 86400}, "duration", "too long", id="duration-100-years-seconds"),
    pytest.param({"duration": 10**40}, "duration", "too long", id="duration-huge-int"),
    pytest.param({"duration": "9" * 400}, "duration", "too long", id="duration-huge-text"),
    pytest.param({"duration": 1.5}, "duration", "whole number", id="duration-fractional"),
    pytest.param({"duration": "PT1.5S"}, "duration", "not a duration", id="duration-fractional-iso"),
    pytest.param({"duration": "PT"}, "duration", "not a duration", id="duration-PT"),
    pytest.param({"duration": "P"}, "duration", "not a duration", id="duration-P"),
    pytest.param({"duration": "15x"}, "duration", "not a duration", id="duration-15x"),
    pytest.param({"duration": ""}, "duration", "not a duration", id="duration-empty"),
    pytest.param({"duration": "   "}, "duration", "not a duration", id="duration-blank"),
    pytest.param({"duration": "P1Y"}, "duration", "not a duration", id="duration-years"),
    pytest.param({"duration": "\u00b2"}, "duration", "not a duration", id="duration-superscript-digit"),
    pytest.param({"duration": "PT3H"}, "duration", "maximum", id="duration-over-resource-max"),
    pytest.param({"duration": "P3650D"}, "duration", "maximum", id="duration-10-years-over-max"),
    # catalog
    pytest.param({"resource": "postgres:nope"}, "resource", "not in the catalog", id="unknown-resource"),
    pytest.param({"action": "delete"}, "action", "not offered", id="unknown-action"),
    # start_at
    pytest.param({"start_at": "2030-01-01T09:00:00"}, "start_at", "time zone", id="start-at-naive"),
    pytest.param({"start_at": _in_31_days}, "start_at", "30 days", id="start-at-too-far"),
]


@pytest.mark.parametrize(("changes", "field", "says"), INVALID)
async def test_create_with_invalid_field_is_422(
    stack: Stack, changes: dict[str, object], field: str, says: str | None
) -> None:
    user, key = fresh_user(), uuid.uuid4().hex
    response = await stack.http.post(
        "/v1/requests", json=body_with(**changes), headers={**stack.auth(user, "engineers"), "Idempotency-Key": key}
    )
    error = assert_error(response, 422, code="invalid", field=field, says=says)
    assert error["message"].startswith(field), f"message should lead with the field: {error}"
    await assert_nothing_started(stack, user, key)


async def test_validation_message_is_readable(stack: Stack) -> None:
    response = await stack.http.post(
        "/v1/requests", json=body_with(duration=0), headers=stack.auth("alice", "engineers")
    )
    assert assert_error(response, 422, field="duration")["message"] == "duration: must be greater than zero"


async def test_overlong_idempotency_key_is_422(stack: Stack) -> None:
    user = fresh_user()
    response = await stack.http.post(
        "/v1/requests", json=VALID, headers={**stack.auth(user, "engineers"), "Idempotency-Key": "k" * 201}
    )
    assert_error(response, 422, field="Idempotency-Key")
    mine = await stack.http.get("/v1/requests", params={"mine": "true"}, headers=stack.auth(user, "engineers"))
    assert mine.json()["items"] == []


# -- idempotency ----------------------------------------------------------------------------------


async def test_same_idempotency_key_and_body_gives_one_request(stack: Stack) -> None:
    user, key = fresh_user(), uuid.uuid4().hex
    headers = {**stack.auth(user, "engineers"), "Idempotency-Key": key}
    first = await stack.http.post("/v1/requests", json=VALID, headers=headers)
    assert first.status_code == 201, first.text
    second = await stack.http.post("/v1/requests", json=VALID, headers=headers)
    assert second.status_code == 200, second.text
    assert second.json()["id"] == first.json()["id"]
    assert second.headers["location"] == f"/v1/requests/{first.json()['id']}"
    assert await visible_count(stack, user, at_least=1) == 1


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"reason": "something else"}, id="reason"),
        pytest.param({"duration": "PT30M"}, id="duration"),
        pytest.param({"action": "write"}, id="action"),
        pytest.param({"ticket": "INC-2"}, id="ticket"),
    ],
)
async def test_same_idempotency_key_different_body_is_409(stack: Stack, changes: dict[str, object]) -> None:
    user, key = fresh_user(), uuid.uuid4().hex
    headers = {**stack.auth(user, "engineers"), "Idempotency-Key": key}
    first = await stack.http.post("/v1/requests", json=body_with(ticket="INC-1"), headers=headers)
    assert first.status_code == 201, first.text
    second = await stack.http.post("/v1/requests", json=body_with(**{"ticket": "INC-1", **changes}), headers=headers)
    assert_error(second, 409, code="conflict", field="Idempotency-Key")
    view = await stack.http.get(f"/v1/requests/{first.json()['id']}", headers=stack.auth(user, "engineers"))
    assert view.json()["reason"] == VALID["reason"]


async def test_same_idempotency_key_for_two_users_gives_two_requests(stack: Stack) -> None:
    key = uuid.uuid4().hex
    a = await stack.http.post("/v1/requests", json=VALID, headers={**stack.auth(fresh_user()), "Idempotency-Key": key})
    b = await stack.http.post("/v1/requests", json=VALID, headers={**stack.auth(fresh_user()), "Idempotency-Key": key})
    assert (a.status_code, b.status_code) == (201, 201)
    assert a.json()["id"] != b.json()["id"]


# -- unknown and malformed ids (404) -------------------------------------------------------------

IDS = [
    pytest.param(str(uuid.uuid4()), id="unknown-uuid"),
    pytest.param("a" * 64, id="unknown-64-chars"),
    pytest.param("a" * 65, id="too-long"),
    pytest.param("x'%20OR%201=1", id="quote"),
    pytest.param("%E2%98%83", id="snowman"),
    pytest.param("..%2F..%2Fetc", id="encoded-slashes"),
    pytest.param("id.with.dots", id="dots"),
]


@pytest.mark.parametrize("request_id", IDS)
@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("GET", "", None),
        ("POST", "/approve", {}),
        ("POST", "/deny", {"reason": "no"}),
        ("POST", "/cancel", {}),
        ("POST", "/revoke", {"reason": "done"}),
        ("POST", "/extend", {"duration": "PT5M", "reason": "more"}),
        ("GET", "/credentials", None),
    ],
)
async def test_unknown_or_malformed_id_is_404(
    stack: Stack, request_id: str, method: str, suffix: str, body: object
) -> None:
    response = await stack.http.request(
        method, f"/v1/requests/{request_id}{suffix}", json=body, headers=stack.auth("root", "jit-admins", "db-owners")
    )
    assert_error(response, 404, code="not_found")


# -- wrong state (409) and not allowed (403 / 404) ---------------------------------------------


async def test_second_approval_by_the_same_approver_is_409(stack: Stack) -> None:
    request = await create(stack, fresh_user(), "engineers", resource=CUSTOMERS)
    bob = stack.auth("bob", "db-owners")
    first = await stack.http.post(f"/v1/requests/{request['id']}/approve", json={}, headers=bob)
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "pending"
    again = await stack.http.post(f"/v1/requests/{request['id']}/approve", json={}, headers=bob)
    assert_error(again, 409, code="conflict", says="already approved")
    view = await stack.http.get(f"/v1/requests/{request['id']}", headers=bob)
    assert [a["approver"] for a in view.json()["approvals"]] == ["bob"]
    assert view.json()["status"] == "pending"


async def test_approve_after_deny_is_409(stack: Stack) -> None:
    request = await create(stack, fresh_user(), "engineers")
    denied = await stack.http.post(
        f"/v1/requests/{request['id']}/deny", json={"reason": "not now"}, headers=stack.auth("bob", "db-owners")
    )
    assert denied.json()["status"] == "denied", denied.text
    late = await stack.http.post(
        f"/v1/requests/{request['id']}/approve", json={}, headers=stack.auth("carol", "db-owners")
    )
    assert_error(late, 409, code="conflict", says="denied")
    deny_again = await stack.http.post(
        f"/v1/requests/{request['id']}/deny", json={"reason": "again"}, headers=stack.auth("carol", "db-owners")
    )
    assert_error(deny_again, 409, code="conflict")


async def test_cancel_after_cancel_is_409(stack: Stack) -> None:
    user = fresh_user()
    request = await create(stack, user, "engineers")
    first = await stack.http.post(f"/v1/requests/{request['id']}/cancel", headers=stack.auth(user, "engineers"))
    assert first.json()["status"] == "cancelled", first.text
    again = await stack.http.post(
        f"/v1/requests/{request['id']}/cancel", json={}, headers=stack.auth(user, "engineers")
    )
    assert_error(again, 409, code="conflict", says="cancelled")


async def test_cancel_by_someone_else(stack: Stack) -> None:
    """Who cannot see a request gets 404 (its existence is not confirmed); who can see it but
    is not the requester (an approver) gets 403. Neither changes it."""
    user = fresh_user()
    request = await create(stack, user, "engineers")
    stranger = await stack.http.post(
        f"/v1/requests/{request['id']}/cancel", json={}, headers=stack.auth("mallory", "engineers")
    )
    assert_error(stranger, 404, code="not_found")
    approver = await stack.http.post(
        f"/v1/requests/{request['id']}/cancel", json={}, headers=stack.auth("bob", "db-owners")
    )
    assert_error(approver, 403, code="forbidden", says="only the requester")
    view = await stack.http.get(f"/v1/requests/{request['id']}", headers=stack.auth(user, "engineers"))
    assert view.json()["status"] == "pending"


async def test_revoke_while_pending_is_409_with_a_hint_to_cancel(stack: Stack) -> None:
    user = fresh_user()
    request = await create(stack, user, "engineers")
    response = await stack.http.post(
        f"/v1/requests/{request['id']}/revoke",
        json={"reason": "changed my mind"},
        headers=stack.auth(user, "engineers"),
    )
    assert_error(response, 409, code="conflict", says="cancel")


async def test_extend_beyond_max_and_by_others(stack: Stack) -> None:
    user = fresh_user()
    request = await create(stack, user, "engineers", resource=LOGS, duration="PT3H")
    assert request["status"] == "active"
    me = stack.auth(user, "engineers")
    url = f"/v1/requests/{request['id']}/extend"

    too_long = await stack.http.post(url, json={"duration": "PT2H", "reason": "more"}, headers=me)
    error = assert_error(too_long, 422, code="invalid", field="duration", says="maximum")
    assert error["message"].startswith("duration")
    zero = await stack.http.post(url, json={"duration": 0, "reason": "more"}, headers=me)
    assert_error(zero, 422, code="invalid", field="duration", says="greater than zero")
    no_reason = await stack.http.post(url, json={"duration": "PT5M", "reason": " "}, headers=me)
    assert_error(no_reason, 422, code="invalid", field="reason")

    stranger = await stack.http.post(
        url, json={"duration": "PT5M", "reason": "x"}, headers=stack.auth("mallory", "engineers")
    )
    assert_error(stranger, 404, code="not_found")
    admin = await stack.http.post(
        url, json={"duration": "PT5M", "reason": "x"}, headers=stack.auth("root", "jit-admins")
    )
    assert_error(admin, 403, code="forbidden", says="only the requester")

    view = (await stack.http.get(f"/v1/requests/{request['id']}", headers=me)).json()
    assert view["expires_at"] == request["expires_at"]
    assert view["extensions"] == []


async def test_credentials_refused(stack: Stack) -> None:
    user = fresh_user()
    request = await create(stack, user, "engineers")
    url = f"/v1/requests/{request['id']}/credentials"
    pending = await stack.http.get(url, headers=stack.auth(user, "engineers"))
    assert_error(pending, 409, code="conflict", says="pending")
    # Cannot see it: 404. Can see it (the approver) but is not the requester: 403.
    assert_error(await stack.http.get(url, headers=stack.auth("mallory", "engineers")), 404, code="not_found")
    assert_error(await stack.http.get(url, headers=stack.auth("bob", "db-owners")), 403, code="forbidden")
    approved = await stack.http.post(
        f"/v1/requests/{request['id']}/approve", json={}, headers=stack.auth("bob", "db-owners")
    )
    assert approved.json()["status"] == "active", approved.text
    assert_error(await stack.http.get(url, headers=stack.auth("bob", "db-owners")), 403, code="forbidden")
    assert (await stack.http.get(url, headers=stack.auth(user, "engineers"))).status_code == 200


async def test_bodies_of_actions_are_validated(stack: Stack) -> None:
    user = fresh_user()
    request = await create(stack, user, "engineers")
    bob = stack.auth("bob", "db-owners")
    base = f"/v1/requests/{request['id']}"
    assert_error(await stack.http.post(f"{base}/deny", json={}, headers=bob), 422, field="reason", says="required")
    assert_error(await stack.http.post(f"{base}/deny", json={"reason": ""}, headers=bob), 422, field="reason")
    assert_error(await stack.http.post(f"{base}/approve", json={"comment": 5}, headers=bob), 422, field="comment")
    assert_error(await stack.http.post(f"{base}/approve", json={"approve": True}, headers=bob), 422, field="approve")
    assert_error(await stack.http.post(f"{base}/approve", json=[], headers=bob), 400, code="bad_request")
    assert_error(
        await stack.http.post(f"{base}/approve", content=b"{", headers={**bob, "Content-Type": "application/json"}),
        400,
        code="bad_request",
    )
    assert_error(
        await stack.http.post(f"{base}/cancel", json={"reason": 1}, headers=stack.auth(user)), 422, field="reason"
    )
    # Control characters, in every free-text field of every action.
    for suffix, body, headers in [
        ("approve", {"comment": "fine\x1b]0;pwned\x07"}, bob),
        ("deny", {"reason": "no\rStatus: approved"}, bob),
        ("cancel", {"reason": "oops\x1b[1A"}, stack.auth(user)),
        ("revoke", {"reason": "done\x00"}, stack.auth(user)),
        ("extend", {"duration": "PT5M", "reason": "more\x85"}, stack.auth(user)),
    ]:
        field = next(iter(body.keys() - {"duration"}))
        response = await stack.http.post(f"{base}/{suffix}", json=body, headers=headers)
        assert_error(response, 422, code="invalid", field=field, says="control characters")
    view = await stack.http.get(base, headers=bob)
    assert view.json()["status"] == "pending"
    assert view.json()["approvals"] == []


# -- introspection ------------------------------------------------------------------------------


async def test_introspect_refusals(stack: Stack) -> None:
    server = stack.auth("orders-db", "resource-servers")
    assert_error(await stack.http.post("/v1/introspect", headers=server), 400, code="bad_request", field="token")
    assert_error(await stack.http.post("/v1/introspect", json={"token": "x"}, headers=server), 400, field="token")
    assert_error(await stack.http.post("/v1/introspect", data={"tok": "x"}, headers=server), 400, field="token")
    assert_error(await stack.http.post("/v1/introspect", data={"token": ""}, headers=server), 400, field="token")
    assert_error(
        await stack.http.post(
            "/v1/introspect",
            content=b"token=a&token=b",
            headers={**server, "Content-Type": "application/x-www-form-urlencoded"},
        ),
        400,
        field="token",
    )
    not_a_server = await stack.http.post(
        "/v1/introspect", data={"token": "x"}, headers=stack.auth("alice", "engineers")
    )
    assert_error(not_a_server, 403, code="forbidden")


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("garbage", id="garbage"),
        pytest.param("a.b.c", id="three-dots"),
        pytest.param(jwt.encode({"jti": "x"}, key="", algorithm="none"), id="alg-none"),
        pytest.param(raw_jwt({"alg": "EdDSA", "kid": ["list"], "typ": "at+jwt"}, {"jti": "x"}), id="kid-is-a-list"),
        pytest.param(raw_jwt({"alg": "EdDSA", "kid": {"a": 1}, "typ": "at+jwt"}, {"jti": "x"}), id="kid-is-an-object"),
        pytest.param(raw_jwt(["not", "an", "object"], {"jti": "x"}), id="header-is-a-list"),
        pytest.param(raw_jwt({"alg": "EdDSA", "typ": "at+jwt"}, ["payload"]), id="payload-is-a-list"),
        pytest.param("\u2603" * 10, id="unicode"),
    ],
)
async def test_introspect_garbage_is_inactive(stack: Stack, token: str) -> None:
    response = await stack.http.post(
        "/v1/introspect", data={"token": token}, headers=stack.auth("orders-db", "resource-servers")
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"active": False}


async def test_introspect_of_an_identity_token_is_inactive(stack: Stack) -> None:
    server = stack.auth("orders-db", "resource-servers")
    response = await stack.http.post("/v1/introspect", data={"token": stack.token("alice")}, headers=server)
    assert response.json() == {"active": False}


# -- list filters -------------------------------------------------------------------------------

LIST_INVALID = [
    pytest.param({"requester": "alice\n"}, "requester", id="requester-trailing-newline"),
    pytest.param({"requester": "DOMAIN\\alice"}, "requester", id="requester-backslash"),
    pytest.param({"resource": 'a"b'}, "resource", id="resource-double-quote"),
    pytest.param({"status": "bogus"}, "status", id="status-unknown"),
    pytest.param({"status": "pending' OR 1=1"}, "status", id="status-injection"),
    pytest.param({"page_size": "0"}, "page_size", id="page-size-0"),
    pytest.param({"page_size": "1000"}, "page_size", id="page-size-1000"),
    pytest.param({"page_size": "-1"}, "page_size", id="page-size-negative"),
    pytest.param({"page_size": "ten"}, "page_size", id="page-size-text"),
    pytest.param({"mine": "maybe"}, "mine", id="mine-not-bool"),
    pytest.param({"page_token": "!!!"}, "page_token", id="page-token-junk"),
    pytest.param({"page_token": "not-a-token"}, "page_token", id="page-token-text"),
    pytest.param({"page_token": base64.urlsafe_b64encode(b"foobar").decode()}, "page_token", id="page-token-base64"),
    pytest.param({"page_token": base64.urlsafe_b64encode(b'{"a": 1}').decode()}, "page_token", id="page-token-json"),
    pytest.param({"page_token": "x" * 5000}, "page_token", id="page-token-huge"),
]


# Escaped, not refused (tests/test_listing_subjects.py): they find what is spelled so, here nothing.
LIST_ESCAPED = [
    pytest.param({"requester": "x' OR 1=1"}, id="requester-injection"),
    pytest.param({"requester": "alice smith"}, id="requester-space"),
    pytest.param({"resource": "x') OR ('1'='1"}, id="resource-injection"),
]


@pytest.mark.parametrize("params", LIST_ESCAPED)
async def test_list_filters_are_escaped_and_find_only_their_value(stack: Stack, params: dict[str, str]) -> None:
    await create(stack, fresh_user(), "engineers")
    response = await stack.http.get("/v1/requests", params=params, headers=stack.auth("root", "jit-admins"))
    assert response.status_code == 200, response.text
    assert response.json()["items"] == []


@pytest.mark.parametrize(("params", "field"), LIST_INVALID)
async def test_list_with_bad_filters_is_422(stack: Stack, params: dict[str, str], field: str) -> None:
    response = await stack.http.get("/v1/requests", params=params, headers=stack.auth("root", "jit-admins"))
    assert_error(response, 422, code="invalid", field=field)


async def test_a_real_page_token_works(stack: Stack) -> None:
    user = fresh_user()
    first = await create(stack, user, "engineers")
    second = await create(stack, user, "engineers")
    assert await visible_count(stack, user, at_least=2) == 2
    me = stack.auth(user, "engineers")
    ids: list[str] = []
    params: dict[str, str] = {"mine": "true", "page_size": "1"}
    for _ in range(5):
        page = await stack.http.get("/v1/requests", params=params, headers=me)
        assert page.status_code == 200, page.text
        ids += [i["id"] for i in page.json()["items"]]
        if not page.json()["next_page_token"]:
            break
        params["page_token"] = page.json()["next_page_token"]
    assert sorted(ids) == sorted([first["id"], second["id"]])

    # A token is good only for the caller and the query it was issued for.
    page = await stack.http.get("/v1/requests", params={"mine": "true", "page_size": "1"}, headers=me)
    token = page.json()["next_page_token"]
    assert token
    other_query = {"mine": "true", "page_size": "1", "status": "pending", "page_token": token}
    assert_error(await stack.http.get("/v1/requests", params=other_query, headers=me), 422, field="page_token")
    other_user = {"mine": "true", "page_size": "1", "page_token": token}
    response = await stack.http.get("/v1/requests", params=other_user, headers=stack.auth(fresh_user(), "engineers"))
    assert_error(response, 422, field="page_token")
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    response = await stack.http.get("/v1/requests", params={**other_user, "page_token": tampered}, headers=me)
    assert_error(response, 422, field="page_token")


# -- unknown routes and methods -----------------------------------------------------------------


async def test_unknown_route_and_method_are_in_the_error_shape(stack: Stack) -> None:
    me = stack.auth("alice")
    assert_error(await stack.http.get("/v1/nope", headers=me), 404, code="not_found")
    assert_error(await stack.http.delete("/v1/requests", headers=me), 405, code="method_not_allowed")


# -- Temporal unreachable: 503, never 500 --------------------------------------------------------


class _Proxy:
    """A TCP proxy in front of the Temporal dev server that the test can cut."""

    def __init__(self, target: str):
        host, port = target.rsplit(":", 1)
        self._target = (host, int(port))
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._target)
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()


async def test_temporal_outage_is_503(stack: Stack, tmp_path: Any) -> None:
    proxy = _Proxy(stack.settings.temporal_address)
    address = await proxy.start()
    settings = make_settings(
        stack.client, stack.settings.data_dir, temporal_address=address, task_queue=stack.settings.task_queue
    )
    server, task, base_url = await serve_api(settings)
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
            user = fresh_user()
            me = {"Authorization": f"Bearer {mint_dev_token(settings, user, ['engineers'])}"}
            # Through the proxy, everything works...
            created = await http.post("/v1/requests", json=VALID, headers=me)
            assert created.status_code == 201, created.text
            request_id = created.json()["id"]
            await proxy.cut()
            # ...then Temporal is gone: 503 with Retry-After, in the error shape, never a 500.
            calls = [
                http.get(f"/v1/requests/{request_id}", headers=me),
                http.get("/v1/requests", params={"mine": "true"}, headers=me),
                http.post("/v1/requests", json=VALID, headers={**me, "Idempotency-Key": "during-outage"}),
                http.post(f"/v1/requests/{request_id}/cancel", json={}, headers=me),
            ]
            for response in await asyncio.gather(*calls):
                assert_error(response, 503, code="unavailable", says="Temporal")
                assert response.headers["retry-after"].isdigit()
            ready = await http.get("/readyz")
            assert ready.status_code == 503
    finally:
        server.should_exit = True
        await task
    # The request made before the outage is untouched; the one attempted during it does not exist.
    view = await stack.http.get(f"/v1/requests/{request_id}", headers=stack.auth(user, "engineers"))
    assert view.json()["status"] == "pending"
    would_be = str(uuid.uuid5(_IDEMPOTENCY_NS, f"{user}\nduring-outage"))
    with pytest.raises(RPCError) as raised:
        await stack.client.get_workflow_handle(workflow_id(would_be)).describe()
    assert raised.value.status == RPCStatusCode.NOT_FOUND
