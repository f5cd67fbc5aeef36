"""The ``jit`` CLI as a user runs it: a subprocess against the real stack.

The API serves from this test's event loop, so the CLI must run as a child
process awaited with asyncio, never as a blocking call.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import jwt

from tests.conftest import Stack, free_port

JIT = str(Path(sys.executable).parent / "jit")
ORDERS = "postgres:orders/public.orders"


@dataclass
class Run:
    code: int
    out: str
    err: str


async def jit(*args: str, server: str, data_dir: Path, **env: str) -> Run:
    # The caller's own JIT_* settings must not leak into the test.
    base = {k: v for k, v in os.environ.items() if not k.startswith("JIT_")}
    proc = await asyncio.create_subprocess_exec(
        JIT,
        *args,
        env={**base, "JIT_SERVER": server, "JIT_DATA_DIR": str(data_dir), **env},
        cwd=data_dir.parent,  # away from any .env in the checkout
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    return Run(proc.returncode or 0, out.decode(), err.decode())


async def run(stack: Stack, *args: str, **env: str) -> Run:
    return await jit(*args, server=stack.base_url, data_dir=stack.settings.data_dir, **env)


async def file_request(stack: Stack, *who: str, duration: str = "15m") -> str:
    result = await run(
        stack, *who, "request", ORDERS, "--action", "read", "--for", duration, "--reason", "debugging INC-1"
    )
    assert result.code == 0, result.err
    request_id, status = result.out.split()[:2]
    assert status == "pending"
    assert result.out.endswith("  (needs 1 approval from db-owners)\n")
    return request_id


def one_error_line(result: Run) -> str:
    assert result.code != 0
    assert result.out == ""
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("jit: ")
    return lines[0]


async def test_dev_token_is_accepted_by_the_api(stack: Stack) -> None:
    user = f"dora-{uuid.uuid4().hex[:8]}"  # the Temporal server is shared: a user with no requests yet
    minted = await run(stack, "dev-token", user, "--group", "engineers", "--ttl", "10m")
    assert minted.code == 0, minted.err
    token = minted.out.strip()
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["sub"], claims["groups"], claims["exp"] - claims["iat"]) == (user, ["engineers"], 600)

    response = await stack.http.get("/v1/requests", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    # The same token through JIT_TOKEN.
    listed = await run(stack, "ls", JIT_TOKEN=token)
    assert listed.code == 0, listed.err
    assert listed.out.strip() == "no requests"


async def test_request_approve_token_show_revoke(stack: Stack) -> None:
    alice = ("--as", "alice", "--group", "engineers")
    request_id = await file_request(stack, *alice)

    pending = await run(stack, *alice, "show", request_id)
    assert "status:    pending" in pending.out
    assert "approvals: 0 of 1 from db-owners" in pending.out

    approved = await run(stack, "--as", "bob", "--group", "db-owners", "approve", request_id, "--comment", "ok")
    assert approved.code == 0, approved.err
    assert approved.out.startswith(f"{request_id}  active  until ")

    token = await run(stack, *alice, "token", request_id)
    assert token.code == 0, token.err
    access_token = token.out.strip()
    assert token.out == access_token + "\n"  # nothing else: $(jit token ID) works
    claims = jwt.decode(access_token, options={"verify_signature": False})
    assert (claims["sub"], claims["aud"], claims["scope"], claims["jti"]) == ("alice", ORDERS, "read", request_id)

    shown = await run(stack, *alice, "show", request_id)
    assert shown.code == 0, shown.err
    lines = shown.out.splitlines()
    assert "status:    active" in lines
    assert "duration:  15m" in lines
    assert "reason:    debugging INC-1" in lines
    assert any(line.strip().startswith("bob at ") and line.endswith(": ok") for line in lines)
    assert any(line.startswith("expires:") for line in lines)

    as_json = await run(stack, *alice, "show", request_id, "--json")
    assert json.loads(as_json.out)["approvals"][0]["approver"] == "bob"

    revoked = await run(stack, *alice, "revoke", request_id, "--reason", "done")
    assert revoked.code == 0, revoked.err
    assert revoked.out.strip() == f"{request_id}  revoked"

    gone = await run(stack, *alice, "token", request_id)
    assert one_error_line(gone) == "jit: 409 conflict: request is revoked, not active"
    assert gone.code == 1


async def test_auto_approved_request_is_active_at_once_and_can_be_extended(stack: Stack) -> None:
    alice = ("--as", "alice")
    filed = await run(
        stack, *alice, "--json", "request", "k8s:prod/logs", "--action", "read", "--for", "PT15M", "--reason", "logs"
    )
    assert filed.code == 0, filed.err
    view = json.loads(filed.out)
    assert view["status"] == "active"

    extended = await run(stack, *alice, "extend", view["id"], "--for", "30m", "--reason", "still digging")
    assert extended.code == 0, extended.err
    assert extended.out.startswith(f"{view['id']}  active  until ")
    shown = await run(stack, *alice, "show", view["id"])
    assert "duration:  15m (+30m extended)" in shown.out
    lines = shown.out.splitlines()
    assert any(line.startswith("extended:  +30m by alice at ") and line.endswith(": still digging") for line in lines)
    # Why it needed no approver, and under which rules it was decided.
    assert "why:       permitted by anyone-requests: tests: anyone may ask for what the catalog offers" in lines
    assert lines[-1] == f"policy:    {view['policy_version']}"


async def test_deny_and_cancel(stack: Stack) -> None:
    alice = ("--as", "alice")
    denied_id = await file_request(stack, *alice)
    denied = await run(stack, "--as", "bob", "--group", "db-owners", "deny", denied_id, "--reason", "not today")
    assert denied.out.strip() == f"{denied_id}  denied"

    cancelled_id = await file_request(stack, *alice)
    cancelled = await run(stack, *alice, "cancel", cancelled_id)
    assert cancelled.out.strip() == f"{cancelled_id}  cancelled"
    again = await run(stack, *alice, "cancel", cancelled_id)
    assert one_error_line(again) == "jit: 409 conflict: request is cancelled"


async def test_self_approval_is_one_403_line(stack: Stack) -> None:
    alice = ("--as", "alice", "--group", "db-owners")
    request_id = await file_request(stack, *alice)
    result = await run(stack, *alice, "approve", request_id)
    assert one_error_line(result) == "jit: 403 forbidden: you cannot approve your own request"
    assert result.code == 1


async def test_over_max_duration_names_the_field(stack: Stack) -> None:
    result = await run(stack, "--as", "alice", "request", ORDERS, "--action", "read", "--for", "3h", "--reason", "r")
    line = one_error_line(result)
    assert line.startswith("jit: 422 invalid: ")
    assert "3h exceeds the maximum of 2h" in line
    assert line.endswith(" (field: duration)")
    assert result.code == 1


async def test_bad_duration_is_a_usage_error(stack: Stack) -> None:
    result = await run(stack, "--as", "alice", "request", ORDERS, "--action", "read", "--for", "soon", "--reason", "r")
    assert result.code == 2
    assert "Invalid value for '--for'" in result.err
    assert "Traceback" not in result.err


async def test_ls_mine_lists_the_request(stack: Stack) -> None:
    user = f"alice-{uuid.uuid4().hex[:8]}"  # the Temporal server is shared: only this test's requests
    request_id = await file_request(stack, "--as", user)
    mine = await run(stack, "--as", user, "ls", "--mine")
    assert mine.code == 0, mine.err
    header, *rows = mine.out.splitlines()
    assert header.split()[:5] == ["ID", "STATUS", "REQUESTER", "RESOURCE", "ACTION"]
    assert [row.split()[:5] for row in rows] == [[request_id, "pending", user, ORDERS, "read"]]

    others = await run(stack, "--as", f"mallory-{uuid.uuid4().hex[:8]}", "ls", "--mine")
    assert others.out.strip() == "no requests"


async def test_unreachable_server_is_one_line_and_exit_3(tmp_path: Path) -> None:
    server = f"http://127.0.0.1:{free_port()}"
    result = await jit("--token", "x", "ls", server=server, data_dir=tmp_path / "data")
    assert result.code == 3
    assert one_error_line(result) == f"jit: cannot reach {server}: is the API running? (make run)"


async def test_missing_token_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = await jit("show", "some-id", server="http://127.0.0.1:9", data_dir=tmp_path / "data")
    assert result.code == 2
    assert "JIT_TOKEN" in one_error_line(result)


async def test_policy_check_exits_non_zero_with_file_and_line(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    offline = {"server": "http://127.0.0.1:9", "data_dir": tmp_path / "data"}  # needs no server
    ok = await jit("policy", "check", str(root / "config/policies"), **offline)
    assert ok.code == 0, ok.err
    assert ok.out.startswith("ok: ") and "5 resources" in ok.out  # the catalog beside the directory

    policies = tmp_path / "policies"
    shutil.copytree(root / "config/policies", policies)
    path = policies / "request.cedar"
    path.write_text(path.read_text().replace("context.duration_s <= 900 &&", "context.duration_s <= &&"))
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "<= &&" in text)
    broken = await jit("policy", "check", str(policies), "--catalog", str(root / "config/catalog.yaml"), **offline)
    assert broken.code == 1
    assert broken.out == ""
    assert broken.err.startswith(f"{path}:{line}: "), broken.err
    assert broken.err.rstrip().endswith("1 problem(s)")
