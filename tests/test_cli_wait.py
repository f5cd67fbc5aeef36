"""``jit request --wait`` and ``jit extend --wait`` as a user runs them: a child process
following its request while other users decide it through the API.

Each step waits for the CLI's own status line (stderr, one line per change when not a
terminal) before acting, so the test never sleeps and never races the CLI.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from cli.wait import StatusLine
from core.provisioners.postgres_config import role_name
from tests.conftest import Stack, running_stack
from tests.e2e_support import write_catalog
from tests.pg import pg_cluster, pg_db  # noqa: F401
from tests.test_cli import JIT, ORDERS, Run
from tests.test_postgres_e2e import RESOURCE as PG_RESOURCE
from tests.test_postgres_e2e import admin_dsn, orders_db, pg_stack  # noqa: F401

CUSTOMERS = "postgres:orders/public.customers"  # 2 approvals from db-owners, privacy
HURRIED = "db:hurried"  # nobody has long to approve it
REAPPROVED = "db:reapproved"  # an extension waits for db-owners
LINE_TIMEOUT_S = 60.0


@pytest.fixture
async def wait_stack(dev_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Stack]:
    base = {"actions": ["read"], "max_duration": "2h", "approvals_required": 1, "approver_groups": ["db-owners"]}
    catalog = write_catalog(
        tmp_path / "catalog.yaml",
        {"id": HURRIED, "approval_timeout": "2s", **base},
        {"id": REAPPROVED, "approval_timeout": "1h", "reapprove_extensions": True, **base},
    )
    async with running_stack(dev_env, tmp_path / "data", catalog_path=catalog) as stack:
        yield stack


@dataclass
class Waiting:
    """A ``jit ... --wait`` child process; its stderr read line by line as it comes."""

    proc: asyncio.subprocess.Process
    lines: list[str]

    @classmethod
    async def start(cls, stack: Stack, *args: str) -> Waiting:
        env = {k: v for k, v in os.environ.items() if not k.startswith("JIT_")}
        proc = await asyncio.create_subprocess_exec(
            JIT,
            *args,
            env={**env, "JIT_SERVER": stack.base_url, "JIT_DATA_DIR": str(stack.settings.data_dir)},
            cwd=stack.settings.data_dir.parent,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc, [])

    async def line(self) -> str:
        """The next status line (the CLI prints one per change)."""
        assert self.proc.stderr is not None
        raw = await asyncio.wait_for(self.proc.stderr.readline(), LINE_TIMEOUT_S)
        assert raw, f"the CLI ended (stderr so far: {self.lines})"
        self.lines.append(raw.decode().rstrip("\n"))
        return self.lines[-1]

    async def line_containing(self, text: str) -> str:
        while text not in (line := await self.line()):
            pass
        return line

    async def result(self) -> Run:
        out, err = await asyncio.wait_for(self.proc.communicate(), LINE_TIMEOUT_S)
        self.lines += err.decode().splitlines()
        return Run(self.proc.returncode or 0, out.decode(), "\n".join(self.lines))


async def decide(stack: Stack, request_id: str, verb: str, user: str, group: str, **body: Any) -> dict[str, Any]:
    response = await stack.http.post(f"/v1/requests/{request_id}/{verb}", json=body, headers=stack.auth(user, group))
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def view_of(stack: Stack, request_id: str) -> dict[str, Any]:
    response = await stack.http.get(f"/v1/requests/{request_id}", headers=stack.auth("alice"))
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def ask(resource: str, *extra: str) -> tuple[str, ...]:
    return ("--as", "alice", "request", resource, "--action", "read", "--for", "15m", "--reason", "INC-9", *extra)


async def test_waits_through_two_approvals_until_active_and_says_how_to_use_it(wait_stack: Stack) -> None:
    stack = wait_stack
    waiting = await Waiting.start(stack, *ask(CUSTOMERS, "--wait"))
    first = await waiting.line()
    request_id = first.split()[0]
    assert first == f"{request_id}  pending  (needs 2 approvals from db-owners, privacy)"

    await decide(stack, request_id, "approve", "bob", "db-owners")
    assert await waiting.line() == f"{request_id}  pending  approved by bob (1 of 2)"
    await decide(stack, request_id, "approve", "carol", "privacy")

    result = await waiting.result()
    assert result.code == 0, result.err
    status, usage = result.out.splitlines()
    assert status.startswith(f"{request_id}  active  until ")
    assert usage == f"token:  jit token {request_id}"
    assert result.err.splitlines()[-1] == status  # the live line ends where stdout starts
    assert "eyJ" not in result.out + result.err  # how to get the token, never the token


async def test_denied_exits_5_with_who_and_why(wait_stack: Stack) -> None:
    waiting = await Waiting.start(wait_stack, *ask(ORDERS, "--wait"))
    request_id = (await waiting.line()).split()[0]
    await decide(wait_stack, request_id, "deny", "bob", "db-owners", reason="not today")
    result = await waiting.result()
    assert result.code == 5
    assert result.out == f"{request_id}  denied\n"
    assert result.err.splitlines()[-1] == "jit: denied by bob: not today"


async def test_timed_out_exits_6(wait_stack: Stack) -> None:
    waiting = await Waiting.start(wait_stack, *ask(HURRIED, "--wait"))  # approval_timeout: 2s
    result = await waiting.result()
    request_id = result.out.split()[0]
    assert result.code == 6, result.err
    assert result.out == f"{request_id}  timed_out\n"
    assert result.err.splitlines()[-1] == "jit: timed out: nobody approved it in time"


async def test_cancelled_while_waiting_exits_7(wait_stack: Stack) -> None:
    waiting = await Waiting.start(wait_stack, *ask(ORDERS, "--wait"))
    request_id = (await waiting.line()).split()[0]
    cancelled = await wait_stack.http.post(
        f"/v1/requests/{request_id}/cancel", json={"reason": "wrong table"}, headers=wait_stack.auth("alice")
    )
    assert cancelled.status_code == 200, cancelled.text
    result = await waiting.result()
    assert result.code == 7
    assert result.err.splitlines()[-1] == "jit: cancelled by alice: wrong table"


async def test_timeout_exits_3_and_leaves_the_request_filed(wait_stack: Stack) -> None:
    waiting = await Waiting.start(wait_stack, *ask(ORDERS, "--wait", "--timeout", "1"))
    result = await waiting.result()
    request_id = result.out.split()[0]
    assert result.code == 3, result.err
    assert (
        result.err.splitlines()[-1]
        == f"jit: still pending after 1s; request {request_id} stays filed: jit show {request_id}"
    )
    assert (await view_of(wait_stack, request_id))["status"] == "pending"


async def test_ctrl_c_stops_waiting_not_the_request(wait_stack: Stack) -> None:
    waiting = await Waiting.start(wait_stack, *ask(ORDERS, "--wait"))
    request_id = (await waiting.line()).split()[0]
    waiting.proc.send_signal(signal.SIGINT)
    result = await waiting.result()
    assert result.code == 130
    assert result.out.startswith(f"{request_id}  pending")
    assert (
        result.err.splitlines()[-1] == f"jit: stopped waiting; request {request_id} stays filed: jit show {request_id}"
    )
    assert (await view_of(wait_stack, request_id))["status"] == "pending"


async def test_auto_approved_is_active_at_once(wait_stack: Stack) -> None:
    result = await (await Waiting.start(wait_stack, *ask("k8s:prod/logs", "--wait"))).result()
    assert result.code == 0, result.err
    request_id = result.out.split()[0]
    assert result.out.splitlines()[1:] == [f"token:  jit token {request_id}"]


async def test_extend_waits_for_reapproval_denied_then_extended(wait_stack: Stack) -> None:
    stack = wait_stack
    created = await stack.http.post(
        "/v1/requests",
        json={"resource": REAPPROVED, "action": "read", "duration": "15m", "reason": "INC-9"},
        headers=stack.auth("alice"),
    )
    assert created.status_code == 201, created.text
    request_id = created.json()["id"]
    expires_at = (await decide(stack, request_id, "approve", "bob", "db-owners"))["expires_at"]
    extend = ("--as", "alice", "extend", request_id, "--for", "30m", "--reason", "migration", "--wait")

    waiting = await Waiting.start(stack, *extend)
    assert (await waiting.line()).endswith("(extension of 30m waiting for approval)")
    await decide(stack, request_id, "deny", "bob", "db-owners", reason="finish tomorrow")
    refused = await waiting.result()
    assert refused.code == 5, refused.err
    assert refused.out.startswith(f"{request_id}  active  until ")
    assert (
        refused.err.splitlines()[-1] == f"jit: the extension of request {request_id} was denied; access ends as before"
    )
    assert (await view_of(stack, request_id))["expires_at"] == expires_at

    waiting = await Waiting.start(stack, *extend)
    await waiting.line_containing("waiting for approval")
    await decide(stack, request_id, "approve", "bob", "db-owners")
    extended = await waiting.result()
    assert extended.code == 0, extended.err
    after = await view_of(stack, request_id)
    assert after["expires_at"] > expires_at and after["pending_extension"] is None
    assert extended.out.startswith(f"{request_id}  active  until ")
    assert extended.out.count("\n") == 1


async def test_extend_wait_ends_with_the_grant_exit_7(wait_stack: Stack) -> None:
    stack = wait_stack
    created = await stack.http.post(
        "/v1/requests",
        json={"resource": REAPPROVED, "action": "read", "duration": "15m", "reason": "INC-9"},
        headers=stack.auth("alice"),
    )
    request_id = created.json()["id"]
    await decide(stack, request_id, "approve", "bob", "db-owners")
    waiting = await Waiting.start(
        stack, "--as", "alice", "extend", request_id, "--for", "30m", "--reason", "r", "--wait"
    )
    await waiting.line_containing("waiting for approval")
    revoked = await stack.http.post(
        f"/v1/requests/{request_id}/revoke", json={"reason": "incident over"}, headers=stack.auth("alice")
    )
    assert revoked.status_code == 200, revoked.text
    result = await waiting.result()
    assert result.code == 7, result.err
    assert (
        result.err.splitlines()[-1]
        == "jit: the grant ended (revoked by alice: incident over) before the extension was decided"
    )


async def test_a_provisioned_database_gets_the_psql_hint_not_the_password(pg_stack: Stack) -> None:  # noqa: F811
    stack = pg_stack
    waiting = await Waiting.start(stack, "--as", "alice", "--group", "engineers", *ask(PG_RESOURCE, "--wait")[2:])
    request_id = (await waiting.line()).split()[0]
    await decide(stack, request_id, "approve", "bob", "db-owners")
    result = await waiting.result()
    assert result.code == 0, result.err
    role = role_name(request_id, "alice")
    assert result.out.splitlines()[1:] == [
        f"token:  jit token {request_id}",
        f"psql:   jit token {request_id} --psql   (role {role}; the command holds its password)",
    ]
    credentials = await stack.http.get(
        f"/v1/requests/{request_id}/credentials", headers=stack.auth("alice", "engineers")
    )
    assert credentials.json()["database"]["password"] not in result.out + result.err
    revoked = await stack.http.post(
        f"/v1/requests/{request_id}/revoke", json={"reason": "done"}, headers=stack.auth("alice", "engineers")
    )
    assert revoked.status_code == 200, revoked.text


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_status_is_one_line_rewritten_then_cleared_for_the_result() -> None:
    terminal = Terminal()
    line = StatusLine(terminal)
    for text in ["x  pending", "x  pending", "x  pending  approved by bob (1 of 2)", "x  active"]:
        line.show(text)
    line.close()
    assert (
        terminal.getvalue() == "\r\x1b[Kx  pending\r\x1b[Kx  pending  approved by bob (1 of 2)\r\x1b[Kx  active\r\x1b[K"
    )
