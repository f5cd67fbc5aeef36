"""What the API does with the body itself, before any route judges it: size and duplicate keys."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from temporalio.testing import WorkflowEnvironment

from tests.conftest import Stack, running_stack
from tests.test_bad_input import VALID, assert_error, assert_nothing_started, fresh_user

LIMIT = 64 * 1024
ANSWER_WITHIN_S = 15  # a bound, not a wait: the answer comes as soon as the limit is passed


async def raw_exchange(stack: Stack, head: str, *parts: bytes) -> bytes:
    """Send a request head and some body bytes, never the rest; return the status line the server answers.

    A server that reads the whole body first never answers: the bounded read then fails the test.
    """
    url = urlsplit(stack.base_url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        writer.write(head.encode() + b"\r\n")
        for part in parts:
            writer.write(part)
        await writer.drain()
        return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), ANSWER_WITHIN_S)
    finally:
        writer.close()


def head(path: str, *headers: str) -> str:
    return "\r\n".join([f"POST {path} HTTP/1.1", "Host: api", "Content-Type: application/json", *headers, ""])


@pytest.mark.parametrize("path", ["/v1/requests", "/v1/introspect", "/codec/decode", "/codec/login", "/healthz"])
async def test_a_declared_50_mb_body_is_refused_before_it_is_read(stack: Stack, path: str) -> None:
    answer = await raw_exchange(stack, head(path, f"Content-Length: {50 * 1024 * 1024}"), b"{" + b" " * 1024)
    assert answer.startswith(b"HTTP/1.1 413"), answer


async def test_a_chunked_body_is_cut_at_the_limit(stack: Stack) -> None:
    chunk = b" " * 16 * 1024
    chunks = [b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(LIMIT // len(chunk) + 2)]
    answer = await raw_exchange(stack, head("/v1/requests", "Transfer-Encoding: chunked"), b"1\r\n{\r\n", *chunks)
    assert answer.startswith(b"HTTP/1.1 413"), answer


async def test_too_large_is_in_the_error_shape_signed_in_or_not(stack: Stack) -> None:
    body = json.dumps({**VALID, "reason": "x" * LIMIT}).encode()
    for headers in ({}, stack.auth("alice", "engineers")):
        response = await stack.http.post(
            "/v1/requests", content=body, headers={**headers, "Content-Type": "application/json"}
        )
        error = assert_error(response, 413, code="too_large", says=str(LIMIT))
        assert "JIT_MAX_BODY_BYTES" in error["message"]


async def test_a_body_at_the_limit_is_read_and_judged(stack: Stack) -> None:
    text = json.dumps({**VALID, "reason": ""})
    body = text.replace('"reason": ""', '"reason": "' + "x" * (LIMIT - len(text)) + '"').encode()
    assert len(body) == LIMIT
    response = await stack.http.post(
        "/v1/requests", content=body, headers={**stack.auth("alice", "engineers"), "Content-Type": "application/json"}
    )
    assert_error(response, 422, field="reason", says="at most 1000")


async def test_the_limit_is_a_setting(dev_env: WorkflowEnvironment, tmp_path: Path) -> None:
    async with running_stack(dev_env, tmp_path / "data", max_body_bytes=100) as small:
        refused = await small.http.post("/v1/requests", json={**VALID, "reason": "y" * 100})
        assert_error(refused, 413, says="100 bytes")
        fits = await small.http.post("/v1/requests", json={"reason": "r"}, headers=small.auth("alice"))
        assert_error(fits, 422, field="resource")


# -- duplicate keys ---------------------------------------------------------------------------


async def test_a_duplicate_key_is_refused_naming_it(stack: Stack) -> None:
    user, key = fresh_user(), uuid.uuid4().hex
    body = json.dumps(VALID)[:-1] + ', "reason": "something else entirely"}'
    response = await stack.http.post(
        "/v1/requests",
        content=body,
        headers={**stack.auth(user, "engineers"), "Content-Type": "application/json", "Idempotency-Key": key},
    )
    assert_error(response, 400, code="bad_request", field="reason", says="more than once")
    await assert_nothing_started(stack, user, key)


@pytest.mark.parametrize(
    ("path", "body", "key"),
    [
        pytest.param("/v1/requests/x/approve", b'{"comment": "a", "comment": "b"}', "comment", id="approve"),
        pytest.param("/v1/requests/x/revoke", b'{"reason": "a", "reason": "b"}', "reason", id="revoke"),
        pytest.param("/codec/decode", b'{"payloads": [], "payloads": []}', "payloads", id="codec"),
        pytest.param("/v1/requests", b'{"a": {"x": 1, "x": 2}}', "x", id="nested"),
    ],
)
async def test_duplicate_keys_are_refused_everywhere(stack: Stack, path: str, body: bytes, key: str) -> None:
    response = await stack.http.post(
        path, content=body, headers={**stack.auth("erin", "auditors"), "Content-Type": "application/json"}
    )
    assert_error(response, 400, field=key, says="more than once")


async def test_distinct_keys_and_non_json_bodies_pass_through(stack: Stack) -> None:
    server = stack.auth("orders-db", "resource-servers")
    form = await stack.http.post(
        "/v1/introspect",
        content=b"token=a&token=b",
        headers={**server, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_error(form, 400, field="token", says="once")  # the route's own rule, not this one
    created = await stack.http.post("/v1/requests", json=VALID, headers=stack.auth(fresh_user(), "engineers"))
    assert created.status_code == 201, created.text
