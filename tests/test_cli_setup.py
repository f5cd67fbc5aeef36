"""A new user's first hour with ``jit``: from any directory, pointed at a server, with short ids.

The CLI runs as a subprocess from a directory outside the checkout, with a
clean environment (no JIT_*, its own HOME and XDG_CONFIG_HOME), so nothing of
the server's (its data dir, its keys, a .env) can help it.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
import time
import tomllib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt
from temporalio.testing import WorkflowEnvironment

from api.new_requests import _IDEMPOTENCY_NS
from core.dev_identity import mint_dev_token
from core.settings import Settings
from tests.conftest import ROOT, Stack, make_settings, serve_api

JIT = str(Path(sys.executable).parent / "jit")
ORDERS = "postgres:orders/public.orders"
BODY = {"resource": ORDERS, "action": "read", "duration": "15m", "reason": "INC-1"}


@dataclass
class Run:
    code: int
    out: str
    err: str


@dataclass
class User:
    """A shell of someone who installed jit: a home, and a directory that is not the checkout."""

    home: Path
    cwd: Path

    @classmethod
    def make(cls, tmp_path: Path) -> User:
        home, cwd = tmp_path / "home", tmp_path / "somewhere" / "else"
        home.mkdir()
        cwd.mkdir(parents=True)
        assert not cwd.is_relative_to(ROOT)
        return cls(home, cwd)

    @property
    def config_file(self) -> Path:
        return self.home / ".config" / "jit" / "config.toml"

    async def jit(self, *args: str, cwd: Path | None = None, **env: str) -> Run:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("JIT_", "XDG_"))}
        proc = await asyncio.create_subprocess_exec(
            JIT,
            *args,
            env={**base, "HOME": str(self.home), **env},
            cwd=cwd or self.cwd,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        return Run(proc.returncode or 0, out.decode(), err.decode())


def fresh(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"  # the Temporal server is shared between tests


def error_line(result: Run) -> str:
    lines = result.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("jit: "), result.err
    return lines[0]


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def listed(stack: Stack, auth: dict[str, str], *ids: str) -> None:
    """Visibility is eventually consistent: wait until the caller's list has ``ids``."""

    async def check() -> bool:
        page = (await stack.http.get("/v1/requests", params={"page_size": 200}, headers=auth)).json()
        return set(ids) <= {i["id"] for i in page["items"]}

    await eventually(check, f"{ids} in the list")


# -- dev tokens and the server, from any directory --------------------------------------------


async def test_dev_token_from_any_directory_is_accepted(stack: Stack, tmp_path: Path) -> None:
    user, me = User.make(tmp_path), fresh("dora")
    minted = await user.jit("dev-token", me, "--group", "engineers", "--ttl", "10m", JIT_SERVER=stack.base_url)
    assert minted.code == 0, minted.err
    token = minted.out.strip()
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["sub"], claims["groups"], claims["exp"] - claims["iat"]) == (me, ["engineers"], 600)
    assert "amr" not in claims

    listing = await user.jit("--server", stack.base_url, "ls", JIT_TOKEN=token)
    assert (listing.code, listing.out) == (0, "no requests\n"), listing.err
    # --as asks the same endpoint: no key file anywhere near this directory.
    as_user = await user.jit("--server", stack.base_url, "--as", me, "ls", "--mine")
    assert (as_user.code, as_user.out) == (0, "no requests\n"), as_user.err
    assert list(user.cwd.iterdir()) == []  # no .data of its own, as jit once made

    mfa = await user.jit("dev-token", "bob", "--group", "db-owners", "--mfa", JIT_SERVER=stack.base_url)
    assert jwt.decode(mfa.out.strip(), options={"verify_signature": False})["amr"] == ["pwd", "mfa"]


async def test_dev_token_refuses_a_ttl_over_a_day(stack: Stack, tmp_path: Path) -> None:
    result = await User.make(tmp_path).jit("dev-token", "alice", "--ttl", "48h", JIT_SERVER=stack.base_url)
    assert result.code == 1
    assert (
        error_line(result)
        == "jit: 422 invalid: ttl: must be at most 24h: a dev token is for a working day (field: ttl)"
    )
    answer = await stack.http.post("/v1/dev/token", json={"user": "alice", "ttl": 10**9})
    assert answer.status_code == 422 and answer.json()["error"]["field"] == "ttl"


async def test_dev_token_endpoint_is_absent_without_the_dev_issuer(
    stack: Stack, dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    assert "/v1/dev/token" in (await stack.http.get("/openapi.json")).json()["paths"]
    settings = make_settings(dev_env.client, tmp_path / "prod-data", dev_identity=False)
    server, task, base_url = await serve_api(settings)
    try:
        async with httpx.AsyncClient(base_url=base_url) as http:
            answer = await http.post("/v1/dev/token", json={"user": "mallory", "groups": ["jit-admins"]})
            assert answer.status_code == 404
            assert "/v1/dev/token" not in (await http.get("/openapi.json")).json()["paths"]
        user = User.make(tmp_path)
        result = await user.jit("dev-token", "mallory", JIT_SERVER=base_url)
        assert result.code == 1
        assert error_line(result).startswith(
            f"jit: {base_url} does not issue dev tokens: its dev identity issuer is off"
        )
        as_user = await user.jit("--as", "mallory", "ls", JIT_SERVER=base_url)
        assert as_user.code == 1 and "does not issue dev tokens" in error_line(as_user)
    finally:
        server.should_exit = True
        await task


async def test_config_file_points_jit_at_the_server_from_any_directory(stack: Stack, tmp_path: Path) -> None:
    user, me = User.make(tmp_path), fresh("erin")
    set_ = await user.jit("config", "set", "server", stack.base_url + "/")
    assert set_.code == 0, set_.err
    assert stat.S_IMODE(user.config_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(user.config_file.parent.stat().st_mode) == 0o700
    assert tomllib.loads(user.config_file.read_text()) == {"server": stack.base_url}
    got = await user.jit("config", "get", "server")
    assert (got.code, got.out) == (0, stack.base_url + "\n")

    elsewhere = tmp_path / "another"
    elsewhere.mkdir()
    listing = await user.jit("--as", me, "ls", "--mine", cwd=elsewhere)
    assert (listing.code, listing.out) == (0, "no requests\n"), listing.err
    shown = await user.jit("config", "show", cwd=elsewhere)
    assert f"server: {stack.base_url} (from {user.config_file})" in shown.out.splitlines()

    # JIT_SERVER, then --server, come first; XDG_CONFIG_HOME moves the file.
    env = await user.jit("config", "show", JIT_SERVER="http://127.0.0.1:9")
    assert "server: http://127.0.0.1:9 (from JIT_SERVER)" in env.out
    flag = await user.jit("--server", "https://jit.example", "config", "show", JIT_SERVER="http://127.0.0.1:9")
    assert "server: https://jit.example (from --server)" in flag.out
    xdg = tmp_path / "xdg"
    moved = await user.jit("config", "show", XDG_CONFIG_HOME=str(xdg))
    assert f"config file: {xdg}/jit/config.toml (none yet)" in moved.out
    assert "server: http://127.0.0.1:8000 (from default)" in moved.out

    bad = await user.jit("config", "set", "server", "jit.example.com")
    assert bad.code == 2 and error_line(bad) == "jit: server: 'jit.example.com' is not an http:// or https:// URL"
    unknown = await user.jit("config", "set", "colour", "blue")
    assert unknown.code == 2 and "'colour' is not 'server'" in unknown.err
    user.config_file.write_text("server = \n")
    broken = await user.jit("--as", me, "ls")
    assert broken.code == 2 and error_line(broken).startswith(f"jit: {user.config_file} is not valid TOML: ")


async def test_a_token_the_server_does_not_accept_says_why(stack: Stack, tmp_path: Path) -> None:
    other = Settings(_env_file=None, data_dir=tmp_path / "another-server")  # type: ignore[call-arg]
    foreign = mint_dev_token(other, "alice", ["engineers"])
    result = await User.make(tmp_path).jit("ls", JIT_SERVER=stack.base_url, JIT_TOKEN=foreign)
    assert result.code == 4
    assert error_line(result) == (
        "jit: 401 unauthenticated: identity token signature does not verify (the server did not accept your "
        "identity token: it was signed for another server or has expired; get a new one with "
        "`jit dev-token USER` (dev) or from your identity provider)"
    )


# -- id prefixes ---------------------------------------------------------------------------------


async def test_a_unique_prefix_works_wherever_an_id_does(stack: Stack, tmp_path: Path) -> None:
    user, alice = User.make(tmp_path), fresh("alice")
    env = {"JIT_SERVER": stack.base_url}
    filed = await user.jit("--as", alice, "request", ORDERS, "--action", "read", "--for", "15m", "--reason", "r", **env)
    assert filed.code == 0, filed.err
    request_id = filed.out.split()[0]
    await listed(stack, stack.auth(alice), request_id)
    # Eight characters: one in four billion to meet another test's request that bob may approve.
    prefix = request_id[:8]

    shown = await user.jit("--as", alice, "show", prefix.upper(), **env)
    assert shown.code == 0, shown.err
    assert shown.out.splitlines()[0] == f"id:        {request_id}"
    answer = await stack.http.get(f"/v1/requests/{prefix}", headers=stack.auth(alice))
    assert answer.json()["id"] == request_id

    approved = await user.jit("--as", "bob", "--group", "db-owners", "approve", prefix, **env)
    assert approved.code == 0, approved.err
    assert approved.out.startswith(f"{request_id}  active  until ")
    token = await user.jit("--as", alice, "token", prefix, **env)
    assert token.code == 0 and jwt.decode(token.out.strip(), options={"verify_signature": False})["jti"] == request_id
    revoked = await user.jit("--as", alice, "revoke", prefix, "--reason", "done", **env)
    assert revoked.out == f"{request_id}  revoked\n", revoked.err


def _id(user: str, key: str) -> str:
    return str(uuid.uuid5(_IDEMPOTENCY_NS, f"{user}\n{key}"))  # api/new_requests.py request_id_for


def _colliding_keys(alice: str, mallory: str) -> tuple[str, str, str, str]:
    """Idempotency keys for two requests of alice's and one of mallory's whose ids share a 4-character prefix."""
    seen: dict[str, str] = {}
    for n in range(100_000):
        key = f"k{n}"
        prefix = _id(alice, key)[:4]
        if prefix in seen:
            break
        seen[prefix] = key
    else:
        raise AssertionError("no two ids sharing a prefix")
    first, second = seen[prefix], key
    for n in range(5_000_000):
        if _id(mallory, f"m{n}").startswith(prefix):
            return prefix, first, second, f"m{n}"
    raise AssertionError("no id of mallory's with the prefix")


async def test_an_ambiguous_prefix_lists_only_what_the_caller_may_see(stack: Stack, tmp_path: Path) -> None:
    alice, mallory, nobody = fresh("alice"), fresh("mallory"), fresh("nobody")
    prefix, first, second, hers = _colliding_keys(alice, mallory)
    ids = []
    for who, key in [(alice, first), (alice, second), (mallory, hers)]:
        filed = await stack.http.post("/v1/requests", json=BODY, headers={**stack.auth(who), "Idempotency-Key": key})
        assert filed.status_code == 201, filed.text
        ids.append(filed.json()["id"])
    a1, a2, m = ids
    assert {a1[:4], a2[:4], m[:4]} == {prefix}
    await listed(stack, stack.auth(alice), a1, a2)
    await listed(stack, stack.auth(mallory), m)

    ambiguous = await stack.http.get(f"/v1/requests/{prefix}", headers=stack.auth(alice))
    assert ambiguous.status_code == 409
    error = ambiguous.json()["error"]
    assert error["field"] == "request_id"
    assert error["message"] == (
        f"request_id: '{prefix}' is ambiguous, it starts {', '.join(sorted([a1, a2]))}; give more characters"
    )
    assert m not in error["message"]  # mallory's request, which alice cannot see, is no candidate
    # For mallory, whose only visible request starts so, it is unique; for others unknown.
    assert (await stack.http.get(f"/v1/requests/{prefix}", headers=stack.auth(mallory))).json()["id"] == m
    unknown = await stack.http.get(f"/v1/requests/{prefix}", headers=stack.auth(nobody))
    assert unknown.status_code == 404
    assert unknown.json()["error"]["message"] == f"no request starts with '{prefix}'"
    cancel = await stack.http.post(f"/v1/requests/{prefix}/cancel", json={}, headers=stack.auth(alice))
    assert cancel.status_code == 409  # an action on an ambiguous prefix changes nothing
    assert {
        (await stack.http.get(f"/v1/requests/{i}", headers=stack.auth(alice))).json()["status"] for i in ids[:2]
    } == {"pending"}

    user = User.make(tmp_path)
    shown = await user.jit("--as", alice, "show", prefix, JIT_SERVER=stack.base_url)
    assert shown.code == 1
    assert error_line(shown).startswith(f"jit: 409 conflict: request_id: '{prefix}' is ambiguous, it starts ")


async def test_a_prefix_too_short_names_the_rule(stack: Stack, tmp_path: Path) -> None:
    for path in ["/v1/requests/3f0", "/v1/requests/3f0/credentials"]:
        answer = await stack.http.get(path, headers=stack.auth("alice"))
        assert answer.status_code == 422, answer.text
        error = answer.json()["error"]
        assert error["field"] == "request_id"
        assert "at least 4 characters, hex digits and dashes" in error["message"]
    result = await User.make(tmp_path).jit("--as", "alice", "approve", "3f0", JIT_SERVER=stack.base_url)
    assert result.code == 1 and "'3f0' is too short for an id prefix" in error_line(result)


# -- exit codes ------------------------------------------------------------------------------------


async def test_dry_run_exits_non_zero_when_refused(stack: Stack, tmp_path: Path) -> None:
    user = User.make(tmp_path)
    ask = ("--as", "alice", "request", ORDERS, "--action", "read", "--reason", "r", "--dry-run")
    allowed = await user.jit(*ask, "--for", "1h", JIT_SERVER=stack.base_url)
    assert allowed.code == 0, allowed.err
    assert allowed.out.startswith("allowed:   yes")
    refused = await user.jit(*ask, "--for", "3h", JIT_SERVER=stack.base_url)
    assert refused.code == 1
    assert refused.out.startswith("allowed:   no (field: duration)")
    as_json = await user.jit(*ask, "--for", "3h", "--json", JIT_SERVER=stack.base_url)
    assert as_json.code == 1 and json.loads(as_json.out)["allowed"] is False


async def test_help_lists_the_exit_codes(tmp_path: Path) -> None:
    result = await User.make(tmp_path).jit("--help")
    assert result.code == 0
    table = result.out.split("Exit codes:\n", 1)[1].splitlines()
    assert [line.split()[0] for line in table] == ["0", "1", "2", "3", "4", "5", "6", "7", "130"]
