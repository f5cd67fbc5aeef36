"""Reloading the policies under a running API: new requests get the new rules, running ones keep theirs,
a broken edit keeps the last good rules, SIGHUP reloads, and a broken start refuses to start.

Each test serves a private copy of the example policies and catalog. Edits bump
the file's mtime by two seconds (some file systems keep whole seconds), and the
API checks the files on every request (``policy_check_interval_s=0``) or, for
SIGHUP, never on its own; a reload is awaited by its count, never by a sleep.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from api.policies import PolicyRuntime
from policy.check import check
from tests.conftest import EXAMPLE_CATALOG, EXAMPLE_POLICIES, Stack, running_stack

ORDERS = "postgres:orders/public.orders"
REQUEST = {"resource": ORDERS, "action": "read", "duration": "15m", "reason": "INC-123: refund stuck"}


def private_copy(tmp_path: Path) -> tuple[Path, Path]:
    policies = tmp_path / "policies"
    shutil.copytree(EXAMPLE_POLICIES, policies)
    catalog = tmp_path / "catalog.yaml"
    shutil.copy(EXAMPLE_CATALOG, catalog)
    return policies, catalog


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))


@pytest.fixture
async def reloading_stack(dev_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Stack]:
    policies, catalog = private_copy(tmp_path)
    async with running_stack(
        dev_env, tmp_path / "data", policies_dir=policies, catalog_path=catalog, policy_check_interval_s=0
    ) as stack:
        yield stack


def runtime_of(stack: Stack) -> PolicyRuntime:
    return stack.app.state.policies


async def create(stack: Stack, who: dict[str, str], **body: object) -> dict:
    response = await stack.http.post("/v1/requests", json={**REQUEST, **body}, headers=who)
    assert response.status_code == 201, response.text
    return response.json()


async def preview(stack: Stack, who: dict[str, str], **body: object) -> dict:
    response = await stack.http.post("/v1/requests/preview", json={**REQUEST, **body}, headers=who)
    assert response.status_code == 200, response.text
    return response.json()


async def test_an_edit_changes_new_requests_only(reloading_stack: Stack) -> None:
    stack = reloading_stack
    alice = stack.auth("alice", "engineers")
    v1 = runtime_of(stack).version
    running = await create(stack, alice)
    assert running["policy_version"] == v1
    assert (await preview(stack, alice, duration="50m"))["allowed"] is True

    # Engineers may now read for 45m at most.
    edit(stack.settings.policies_dir / "request.cedar", "context.duration_s <= 3600", "context.duration_s <= 2700")
    refused = await preview(stack, alice, duration="50m")
    v2 = refused["policy_version"]
    assert v2 != v1 and v2 == runtime_of(stack).version
    assert (refused["allowed"], refused["field"], refused["max_duration_s"]) == (False, "duration", 2700)
    filed = await create(stack, alice)
    assert filed["policy_version"] == v2

    # The request filed before keeps its own rules: its version, and its 1h maximum.
    assert (await stack.http.get(f"/v1/requests/{running['id']}", headers=alice)).json()["policy_version"] == v1
    approved = await stack.http.post(
        f"/v1/requests/{running['id']}/approve", json={}, headers=stack.auth("bob", "db-owners", mfa=True)
    )
    assert approved.json()["status"] == "active", approved.text
    extended = await stack.http.post(
        f"/v1/requests/{running['id']}/extend", json={"duration": "45m", "reason": "more"}, headers=alice
    )
    assert extended.status_code == 200, extended.text  # 15m + 45m = 1h, past the new 45m
    assert extended.json()["policy_version"] == v1


async def test_a_broken_edit_keeps_the_last_good_policy(
    reloading_stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    stack = reloading_stack
    runtime = runtime_of(stack)
    alice = stack.auth("alice", "engineers")
    good = runtime.version
    path = stack.settings.policies_dir / "approve.cedar"
    original = path.read_text()
    edit(path, original, original + "\nforbid (principal, action, resource")
    tried = runtime.attempts

    with caplog.at_level(logging.ERROR, logger="jit.api.policy"):
        filed = await create(stack, alice)
    assert filed["policy_version"] == good  # still deciding, by the last good rules
    assert runtime.attempts == tried + 1
    errors = runtime.holder.last_errors
    assert errors and errors[0].startswith(f"{path}:"), errors
    assert errors == check(stack.settings.policies_dir, stack.settings.catalog_path)  # as jit policy check says
    assert any(errors[0] in r.getMessage() for r in caplog.records)
    # Not rebuilt (nor logged) again on every request while the files stay broken.
    await create(stack, alice)
    assert runtime.attempts == tried + 1

    # Approving still works under the last good rules.
    approved = await stack.http.post(
        f"/v1/requests/{filed['id']}/approve", json={}, headers=stack.auth("bob", "db-owners", mfa=True)
    )
    assert approved.json()["status"] == "active", approved.text

    edit(path, path.read_text(), original)
    assert (await create(stack, alice))["policy_version"] == good  # same files, same version
    assert runtime.holder.last_errors == []


async def test_sighup_reloads(dev_env: WorkflowEnvironment, tmp_path: Path) -> None:
    policies, catalog = private_copy(tmp_path)
    # The files are never looked at on a request here: only SIGHUP reloads.
    async with running_stack(
        dev_env, tmp_path / "data", policies_dir=policies, catalog_path=catalog, policy_check_interval_s=1e9
    ) as stack:
        runtime = runtime_of(stack)
        alice = stack.auth("alice", "engineers")
        v1 = runtime.version
        edit(policies / "request.cedar", "context.duration_s <= 3600", "context.duration_s <= 2700")
        assert (await preview(stack, alice))["policy_version"] == v1  # not noticed

        tried = runtime.attempts
        if hasattr(signal, "SIGHUP") and threading.current_thread() is threading.main_thread():
            assert runtime.sighup  # the API installed its handler on this (the test's) loop
            os.kill(os.getpid(), signal.SIGHUP)
        else:  # no loop signal handler possible here: what the handler calls
            runtime.reload("SIGHUP")
        await asyncio.wait_for(runtime.wait_for_reload(tried), timeout=30)
        answer = await preview(stack, alice, duration="50m")
        assert answer["policy_version"] == runtime.version != v1
        assert (answer["allowed"], answer["max_duration_s"]) == (False, 2700)


async def test_a_broken_policy_stops_the_api_at_start(tmp_path: Path) -> None:
    policies, catalog = private_copy(tmp_path)
    edit(policies / "request.cedar", "context.duration_s <= 900 &&", "context.duration_s <= &&")
    expected = check(policies, catalog)
    assert expected and expected[0].startswith(f"{policies / 'request.cedar'}:")
    env = {k: v for k, v in os.environ.items() if not k.startswith("JIT_")}
    env |= {
        "JIT_POLICIES_DIR": str(policies),
        "JIT_CATALOG_PATH": str(catalog),
        "JIT_DATA_DIR": str(tmp_path / "data"),
        "JIT_TEMPORAL_ADDRESS": "127.0.0.1:9",  # never reached: the policies are loaded first
    }
    uvicorn = str(Path(sys.executable).parent / "uvicorn")
    proc = await asyncio.create_subprocess_exec(
        uvicorn,
        "--factory",
        "api.app:create_app",
        "--port",
        "0",
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode != 0
    output = (out + err).decode()
    for line in expected:
        location = line.split(": ", 1)[0]  # "…/request.cedar:12", JSON-escaped or not
        assert location in output, output
