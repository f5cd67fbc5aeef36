"""The codec endpoint Temporal UI calls to show decrypted history: auditors only, CORS for the UI only."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import httpx
import jwt
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from api.routes.codec import COOKIE
from core.codec import ENCODING, payloads_to_json
from core.temporal import workflow_id
from tests.conftest import BIN, Stack, running_stack

REASON = "INC-99: read logs of checkout-7f9c for customer jane.doe@example.com"


def plain_payloads(value: object) -> dict:
    data = base64.b64encode(json.dumps(value).encode()).decode()
    return {"payloads": [{"metadata": {"encoding": base64.b64encode(b"json/plain").decode()}, "data": data}]}


def value_of(payloads: dict) -> object:
    [payload] = payloads["payloads"]
    assert base64.b64decode(payload["metadata"]["encoding"]) == b"json/plain"
    return json.loads(base64.b64decode(payload["data"]))


async def encrypted_history_payload(stack: Stack, plain: Client) -> dict:
    """The workflow input of a real request as Temporal stores it, fetched by a client without the codec."""
    created = await stack.http.post(
        "/v1/requests",
        json={"resource": "k8s:prod/logs", "action": "read", "duration": "15m", "reason": REASON},
        headers=stack.auth("alice", "engineers"),
    )
    assert created.status_code == 201, created.text
    request_id = created.json()["id"]
    assert plain.data_converter.payload_codec is None
    history = await plain.get_workflow_handle(workflow_id(request_id)).fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    [payload] = started.input.payloads
    assert payload.metadata["encoding"] == ENCODING
    assert REASON.encode() not in payload.SerializeToString()
    return {"request_id": request_id, "json": payloads_to_json([payload])}


async def test_decode_needs_an_auditor(stack: Stack) -> None:
    body = plain_payloads({"x": 1})
    assert (await stack.http.post("/codec/decode", json=body)).status_code == 401
    bad = await stack.http.post("/codec/decode", json=body, headers={"Authorization": "Bearer not-a-token"})
    assert bad.status_code == 401
    engineer = await stack.http.post("/codec/decode", json=body, headers=stack.auth("alice", "engineers"))
    assert engineer.status_code == 403
    approver = await stack.http.post("/codec/encode", json=body, headers=stack.auth("bob", "db-owners"))
    assert approver.status_code == 403
    for who in (stack.auth("erin", "auditors"), stack.auth("root", "jit-admins")):
        ok = await stack.http.post("/codec/decode", json=body, headers=who)
        assert ok.status_code == 200, ok.text
        assert ok.headers["cache-control"] == "no-store"


async def test_history_payload_decodes_to_the_request(stack: Stack, dev_env: WorkflowEnvironment) -> None:
    found = await encrypted_history_payload(stack, dev_env.client)
    auditor = stack.auth("erin", "auditors")

    decoded = await stack.http.post("/codec/decode", json=found["json"], headers=auditor)

    assert decoded.status_code == 200, decoded.text
    request = value_of(decoded.json())
    assert isinstance(request, dict)
    assert (request["id"], request["reason"], request["requester"]["sub"]) == (found["request_id"], REASON, "alice")


async def test_encode_then_decode_round_trips(stack: Stack) -> None:
    auditor = stack.auth("erin", "auditors")
    encoded = await stack.http.post("/codec/encode", json=plain_payloads({"reason": REASON}), headers=auditor)
    assert encoded.status_code == 200, encoded.text
    [sealed] = encoded.json()["payloads"]
    assert base64.b64decode(sealed["metadata"]["encoding"]) == ENCODING
    assert REASON.encode() not in base64.b64decode(sealed["data"])
    decoded = await stack.http.post("/codec/decode", json=encoded.json(), headers=auditor)
    assert value_of(decoded.json()) == {"reason": REASON}


async def test_malformed_bodies_are_400(stack: Stack) -> None:
    auditor = stack.auth("erin", "auditors")
    for body in (b"not json", b'{"payloads": 3}', b'{"payloads": [{"metadata": 5}]}'):
        response = await stack.http.post(
            "/codec/decode", content=body, headers={**auditor, "Content-Type": "application/json"}
        )
        assert response.status_code == 400, (body, response.text)
    tampered = await stack.http.post("/codec/encode", json=plain_payloads("x"), headers=auditor)
    [sealed] = tampered.json()["payloads"]
    data = bytearray(base64.b64decode(sealed["data"]))
    data[-1] ^= 1
    sealed["data"] = base64.b64encode(bytes(data)).decode()
    refused = await stack.http.post("/codec/decode", json={"payloads": [sealed]}, headers=auditor)
    assert refused.status_code == 400
    assert "failed authentication" in refused.json()["error"]["message"]


async def test_login_sets_a_cookie_that_decodes(stack: Stack, dev_env: WorkflowEnvironment) -> None:
    found = await encrypted_history_payload(stack, dev_env.client)
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as browser:
        page = await browser.get("/codec/login")
        assert page.status_code == 200 and "<form" in page.text

        refused = await browser.post("/codec/login", data={"token": stack.token("alice", "engineers")})
        assert refused.status_code == 403 and COOKIE not in browser.cookies
        garbage = await browser.post("/codec/login", data={"token": "nope"})
        assert garbage.status_code == 403 and COOKIE not in browser.cookies

        signed_in = await browser.post("/codec/login", data={"token": stack.token("erin", "auditors")})
        assert signed_in.status_code == 303
        assert signed_in.headers["location"] == stack.settings.codec_cors_origin
        cookie = signed_in.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie
        assert COOKIE in browser.cookies

        decoded = await browser.post("/codec/decode", json=found["json"])
        assert decoded.status_code == 200, decoded.text
        assert value_of(decoded.json())["reason"] == REASON  # type: ignore[index]


async def test_cors_only_for_the_configured_origin(stack: Stack) -> None:
    ui = stack.settings.codec_cors_origin
    auditor = stack.auth("erin", "auditors")
    body = plain_payloads({"x": 1})

    allowed = await stack.http.post("/codec/decode", json=body, headers={**auditor, "Origin": ui})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ui
    assert allowed.headers["access-control-allow-credentials"] == "true"
    assert "origin" in allowed.headers["vary"].lower()

    other = await stack.http.post("/codec/decode", json=body, headers={**auditor, "Origin": "https://evil.example"})
    assert other.status_code == 200  # not a browser: CORS is the browser's business
    assert "access-control-allow-origin" not in other.headers
    assert "access-control-allow-credentials" not in other.headers
    no_origin = await stack.http.post("/codec/decode", json=body, headers=auditor)
    assert "access-control-allow-origin" not in no_origin.headers

    # A refusal reaches the UI too (readable, so it can say "sign in"), still only for its origin.
    unauth = await stack.http.post("/codec/decode", json=body, headers={"Origin": ui})
    assert unauth.status_code == 401
    assert unauth.headers.get("access-control-allow-origin") == ui


async def test_preflight(stack: Stack) -> None:
    ui = stack.settings.codec_cors_origin
    for operation in ("decode", "encode"):
        preflight = await stack.http.options(
            f"/codec/{operation}",
            headers={
                "Origin": ui,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,x-namespace",
            },
        )
        assert preflight.status_code in (200, 204)
        assert preflight.headers["access-control-allow-origin"] == ui
        assert preflight.headers["access-control-allow-credentials"] == "true"
        assert "POST" in preflight.headers["access-control-allow-methods"]
        allowed_headers = preflight.headers["access-control-allow-headers"].lower()
        assert "content-type" in allowed_headers and "x-namespace" in allowed_headers
        assert "authorization" in allowed_headers

    foreign = await stack.http.options(
        "/codec/decode", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert "access-control-allow-origin" not in foreign.headers


async def test_temporal_cli_decodes_history_through_the_endpoint(stack: Stack) -> None:
    """``temporal workflow show --codec-endpoint …/codec --codec-auth "Bearer …"``, as the README shows."""
    created = await stack.http.post(
        "/v1/requests",
        json={"resource": "k8s:prod/logs", "action": "read", "duration": "15m", "reason": REASON},
        headers=stack.auth("alice", "engineers"),
    )
    assert created.status_code == 201, created.text
    request_id = created.json()["id"]

    async def started_input(*codec: str) -> dict:
        proc = await asyncio.create_subprocess_exec(
            str(BIN / "temporal"), "workflow", "show", "--workflow-id", workflow_id(request_id),
            "--address", stack.settings.temporal_address, "--namespace", stack.settings.temporal_namespace,
            "--output", "json", *codec,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        [payload] = json.loads(out)["events"][0]["workflowExecutionStartedEventAttributes"]["input"]["payloads"]
        return payload

    sealed = await started_input()
    assert base64.b64decode(sealed["metadata"]["encoding"]) == ENCODING
    auditor = f"Bearer {stack.token('erin', 'auditors')}"
    opened = await started_input("--codec-endpoint", f"{stack.base_url}/codec", "--codec-auth", auditor)
    assert value_of({"payloads": [opened]})["reason"] == REASON  # type: ignore[index]


async def test_login_cookie_is_secure_over_https_behind_a_trusted_proxy(stack: Stack) -> None:
    # uvicorn trusts X-Forwarded-Proto from 127.0.0.1 (its default FORWARDED_ALLOW_IPS): our "proxy".
    token = stack.token("erin", "auditors")
    plain = await stack.http.post("/codec/login", data={"token": token})
    assert plain.status_code == 303
    assert "secure" not in plain.headers["set-cookie"].lower()
    behind_tls = await stack.http.post("/codec/login", data={"token": token}, headers={"X-Forwarded-Proto": "https"})
    assert behind_tls.status_code == 303
    cookie = behind_tls.headers["set-cookie"].lower()
    assert "; secure" in cookie and "httponly" in cookie


async def test_login_refuses_posts_from_other_origins(stack: Stack) -> None:
    token = stack.token("erin", "auditors")
    for origin in ("https://evil.example", "null", stack.settings.codec_cors_origin):
        refused = await stack.http.post("/codec/login", data={"token": token}, headers={"Origin": origin})
        assert refused.status_code == 403, (origin, refused.text)
        assert "set-cookie" not in refused.headers
        assert "/codec/login" in refused.json()["error"]["message"]
    own = await stack.http.post("/codec/login", data={"token": token}, headers={"Origin": stack.base_url})
    assert own.status_code == 303 and COOKIE in own.headers["set-cookie"]


async def test_login_page_cannot_be_framed_and_runs_nothing(stack: Stack) -> None:
    for response in (
        await stack.http.get("/codec/login"),
        await stack.http.post("/codec/login", data={"token": "nope"}),
    ):
        csp = response.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
        assert f"form-action 'self' {stack.settings.codec_cors_origin}" in csp
        assert response.headers["x-frame-options"] == "DENY"


async def test_dev_login_signs_the_dev_auditor_in_with_one_click(stack: Stack, dev_env: WorkflowEnvironment) -> None:
    found = await encrypted_history_payload(stack, dev_env.client)
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as browser:
        signed_in = await browser.get("/codec/dev-login")
        assert signed_in.status_code == 303, signed_in.text
        assert signed_in.headers["location"] == stack.settings.codec_cors_origin
        cookie = signed_in.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie and "max-age=3600" in cookie
        claims = jwt.decode(browser.cookies[COOKIE], options={"verify_signature": False})
        assert (claims["sub"], claims["groups"]) == ("dev-auditor", ["auditors"])
        assert claims["exp"] - claims["iat"] <= 3600

        decoded = await browser.post("/codec/decode", json=found["json"])
        assert decoded.status_code == 200, decoded.text
        assert value_of(decoded.json())["reason"] == REASON  # type: ignore[index]


async def test_dev_login_is_absent_without_the_dev_identity_issuer(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with running_stack(dev_env, tmp_path / "data", dev_identity=False) as stack:
        refused = await stack.http.get("/codec/dev-login")
        assert refused.status_code == 404
        assert "set-cookie" not in refused.headers
        # Indistinguishable from a path that never existed.
        assert refused.json() == (await stack.http.get("/no-such-page")).json()
