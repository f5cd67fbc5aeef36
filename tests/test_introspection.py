"""``POST /v1/introspect`` as resource servers see it, now served below FastAPI's dependency layer.

The contract is unchanged: the same answers, the same error bodies and headers,
the OpenAPI entry; a policy reload that takes the permission away bites on the
next call although decisions are cached; answered fine, an introspection is
counted in the metrics but logged at DEBUG, while a refusal is logged at INFO
with its actor.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from api.policies import PolicyRuntime
from core.logging import JsonFormatter
from core.models import Actor
from policy import load_engine
from tests.conftest import TEST_CATALOG, TEST_POLICIES, Stack, running_stack
from tests.test_metrics import parse, value

LOGS = "k8s:prod/logs"  # auto-approved
PATH = "/v1/introspect"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
INTROSPECT_PERMIT = """@id("resource-servers-introspect")
@reason("resource servers may ask whether a token is still active")
permit (principal in Jit::Group::"resource-servers", action == Jit::Action::"introspect", resource);
"""


async def live_token(stack: Stack) -> str:
    alice = stack.auth("alice", "engineers")
    created = await stack.http.post(
        "/v1/requests", json={"resource": LOGS, "action": "read", "duration": "1h", "reason": "test"}, headers=alice
    )
    assert created.status_code == 201, created.text
    creds = await stack.http.get(f"/v1/requests/{created.json()['id']}/credentials", headers=alice)
    assert creds.status_code == 200, creds.text
    return creds.json()["access_token"]


def error(code: str, message: str, field: str | None = None) -> dict:
    return {"error": {"code": code, "message": message, **({"field": field} if field else {})}}


# -- the answers and the errors ---------------------------------------------------------------


async def test_answers_and_error_bodies_are_unchanged(stack: Stack) -> None:
    server = stack.auth("orders-db", "resource-servers")
    token = await live_token(stack)

    active = await stack.http.post(PATH, data={"token": token}, headers=server)
    assert active.status_code == 200, active.text
    assert active.headers["cache-control"] == "no-store"
    assert active.headers["content-type"] == "application/json"
    body = active.json()
    assert (body["active"], body["token_type"], body["sub"], body["aud"], body["scope"]) == (
        True,
        "Bearer",
        "alice",
        LOGS,
        "read",
    )
    assert {"iss", "client_id", "jti", "iat", "nbf", "exp"} <= body.keys()
    inactive = await stack.http.post(PATH, data={"token": "garbage"}, headers=server)
    assert (inactive.status_code, inactive.json()) == (200, {"active": False})
    assert inactive.headers["cache-control"] == "no-store"

    missing = await stack.http.post(PATH, data={"token": token})
    assert (missing.status_code, missing.headers["www-authenticate"]) == (401, "Bearer")
    assert missing.json() == error("unauthenticated", "missing identity: send Authorization: Bearer <token>")
    basic = await stack.http.post(PATH, data={"token": token}, headers={"Authorization": "Basic b3JkZXJzOmRi"})
    assert (basic.status_code, basic.headers["www-authenticate"]) == (401, "Bearer")
    assert basic.json() == error(
        "unauthenticated", "unsupported Authorization scheme 'Basic': send Authorization: Bearer <token>"
    )
    bad = await stack.http.post(PATH, data={"token": token}, headers={"Authorization": "Bearer not-a-jwt"})
    assert (bad.status_code, bad.headers["www-authenticate"]) == (401, 'Bearer error="invalid_token"')
    assert bad.json() == error("unauthenticated", "identity token is malformed: expected a signed JWT")

    refused = await stack.http.post(PATH, data={"token": token}, headers=stack.auth("alice", "engineers"))
    assert refused.status_code == 403
    assert refused.json() == error("forbidden", "only resource servers may introspect tokens")

    as_json = await stack.http.post(PATH, json={"token": token}, headers=server)
    assert as_json.status_code == 400
    assert as_json.json() == error("bad_request", "send the token as a form: token=<access token>", "token")
    twice = await stack.http.post(PATH, content=b"token=a&token=b", headers={**server, **FORM})
    assert twice.status_code == 400
    assert twice.json() == error("bad_request", "token is required, once", "token")

    wrong_method = await stack.http.get(PATH, headers=server)
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"


async def test_documented_in_the_openapi_schema(stack: Stack) -> None:
    schema = (await stack.http.get("/openapi.json")).json()
    operation = schema["paths"][PATH]["post"]
    form = operation["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]
    assert form["required"] == ["token"]
    answers = operation["responses"]
    assert answers["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/Introspection")
    assert {"400", "401", "403"} <= answers.keys()
    assert "active" in schema["components"]["schemas"]["Introspection"]["properties"]


# -- the cached policy decision -----------------------------------------------------------------


def test_decision_is_per_caller_groups() -> None:
    engine = load_engine(TEST_POLICIES, TEST_CATALOG)
    server = Actor(sub="orders-db", groups=["resource-servers"])
    assert engine.may_introspect(server).allowed
    assert engine.may_introspect(server).allowed  # remembered
    # The same name without the group: asked afresh, not answered from the cache.
    assert not engine.may_introspect(Actor(sub="orders-db", groups=[])).allowed
    assert not engine.may_introspect(Actor(sub="orders-db", groups=["engineers"])).allowed


@pytest.fixture
async def reloading_stack(dev_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Stack]:
    policies = tmp_path / "policies"
    shutil.copytree(TEST_POLICIES, policies)
    async with running_stack(dev_env, tmp_path / "data", policies_dir=policies, policy_check_interval_s=0) as stack:
        yield stack


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    st = path.stat()  # some file systems keep whole seconds: move the mtime on for sure
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))


async def test_a_reload_that_takes_introspect_away_bites_at_once(reloading_stack: Stack) -> None:
    stack = reloading_stack
    runtime: PolicyRuntime = stack.app.state.policies
    server = stack.auth("orders-db", "resource-servers")
    for _ in range(3):  # decided once, then answered from the cache
        allowed = await stack.http.post(PATH, data={"token": "x"}, headers=server)
        assert (allowed.status_code, allowed.json()) == (200, {"active": False})

    policies = stack.settings.policies_dir / "permissive.cedar"
    tried = runtime.attempts
    edit(policies, INTROSPECT_PERMIT, "")
    refused = await stack.http.post(PATH, data={"token": "x"}, headers=server)
    assert runtime.attempts == tried + 1  # this very request reloaded the policies
    assert refused.status_code == 403, refused.text
    assert refused.json() == error("forbidden", "only resource servers may introspect tokens")

    admins = '@id("admins-audit-and-introspect")'
    edit(policies, admins, f"{INTROSPECT_PERMIT}\n{admins}")
    again = await stack.http.post(PATH, data={"token": "x"}, headers=server)
    assert again.status_code == 200, again.text


# -- the access log and the metrics --------------------------------------------------------------


@pytest.fixture
def access_lines() -> Iterator[io.StringIO]:
    """The access log as JSON lines, formatted as the requests are answered (so with their actor), at INFO."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    access = logging.getLogger("jit.api.access")
    level = access.level
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    try:
        yield buffer
    finally:
        access.removeHandler(handler)
        access.setLevel(level)


def lines_of(buffer: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


async def test_answered_introspections_are_counted_not_logged_at_info(stack: Stack, access_lines: io.StringIO) -> None:
    server = stack.auth("orders-db", "resource-servers")
    token = await live_token(stack)
    for _ in range(3):
        answered = await stack.http.post(PATH, data={"token": token}, headers=server)
        assert answered.json()["active"] is True
    refused = await stack.http.post(PATH, data={"token": token}, headers=stack.auth("mallory", "engineers"))
    assert refused.status_code == 403
    unknown = await stack.http.post(PATH, data={"token": token})
    assert unknown.status_code == 401
    not_a_form = await stack.http.post(PATH, json={"token": token}, headers=server)
    assert not_a_form.status_code == 400

    introspections = [line for line in lines_of(access_lines) if line["route"] == PATH]
    assert [(line["level"], line["status"], line.get("actor")) for line in introspections] == [
        ("INFO", 403, "mallory"),
        ("INFO", 401, None),
        ("INFO", 400, "orders-db"),
    ]
    # The other routes still log at INFO, with their caller.
    assert any(line["route"] == "/v1/requests" and line.get("actor") == "alice" for line in lines_of(access_lines))

    samples = parse((await stack.http.get("/metrics")).text)
    counted = {
        status: value(samples, "jit_http_requests_total", method="POST", route=PATH, status=status)
        for status in ("200", "400", "401", "403")
    }
    assert counted == {"200": 3, "400": 1, "401": 1, "403": 1}
    assert value(samples, "jit_http_request_duration_seconds_count", method="POST", route=PATH) == 6


async def test_answered_introspections_are_logged_at_debug(stack: Stack, access_lines: io.StringIO) -> None:
    logging.getLogger("jit.api.access").setLevel(logging.DEBUG)
    answered = await stack.http.post(PATH, data={"token": "x"}, headers=stack.auth("orders-db", "resource-servers"))
    assert answered.status_code == 200
    (line,) = [line for line in lines_of(access_lines) if line["route"] == PATH]
    assert (line["level"], line["status"], line["actor"], line["method"]) == ("DEBUG", 200, "orders-db", "POST")
