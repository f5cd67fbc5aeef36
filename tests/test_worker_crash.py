"""A worker SIGKILLed mid-grant: after restart, access still ends when it should."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from core.dev_identity import mint_dev_token
from core.grant_store import open_grant_store
from core.models import Status
from core.settings import Settings
from core.temporal import connect, workflow_id
from tests.conftest import make_settings, serve_api
from workflows.access_request import AccessRequestWorkflow

ROOT = Path(__file__).resolve().parent.parent


def worker_env(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "JIT_DATA_DIR": str(settings.data_dir),
        "JIT_TEMPORAL_ADDRESS": settings.temporal_address,
        "JIT_TEMPORAL_NAMESPACE": settings.temporal_namespace,
        "JIT_TASK_QUEUE": settings.task_queue,
        "JIT_WORKER_METRICS_PORT": "0",  # parallel tests must not fight over a port
    }


async def spawn_worker(settings: Settings) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "worker.py"),
        cwd=ROOT,
        env=worker_env(settings),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


@pytest.fixture
async def crashable(dev_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[tuple[Settings, httpx.AsyncClient]]:
    settings = make_settings(dev_env.client, tmp_path / "data")
    server, task, base_url = await serve_api(settings)
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
            yield settings, http
    finally:
        server.should_exit = True
        await task


async def test_worker_killed_mid_grant_still_revokes(
    dev_env: WorkflowEnvironment, crashable: tuple[Settings, httpx.AsyncClient]
) -> None:
    settings, http = crashable
    alice = {"Authorization": f"Bearer {mint_dev_token(settings, 'alice', ['engineers'])}"}
    server = {"Authorization": f"Bearer {mint_dev_token(settings, 'orders-db', ['resource-servers'])}"}
    worker = await spawn_worker(settings)
    try:
        created = await http.post(
            "/v1/requests",
            json={"resource": "k8s:prod/logs", "action": "read", "duration": 4, "reason": "crash drill"},
            headers=alice,
        )
        assert created.status_code == 201, created.text
        request = created.json()
        assert request["status"] == "active"
        token = (await http.get(f"/v1/requests/{request['id']}/credentials", headers=alice)).json()["access_token"]

        worker.send_signal(signal.SIGKILL)
        await worker.wait()
        worker = await spawn_worker(settings)

        client = await connect(settings)
        handle = client.get_workflow_handle_for(AccessRequestWorkflow.run, workflow_id(request["id"]))
        result = await asyncio.wait_for(handle.result(), timeout=60)
        assert result.status is Status.EXPIRED
        grant = open_grant_store(settings).lookup(request["id"])
        assert grant is not None and grant.revoked_at is not None
        assert result.expires_at is not None and grant.revoked_at >= result.expires_at
        assert datetime.now(UTC) >= result.expires_at
        inactive = await http.post("/v1/introspect", data={"token": token}, headers=server)
        assert inactive.json() == {"active": False}
    finally:
        if worker.returncode is None:
            worker.terminate()
            await worker.wait()
