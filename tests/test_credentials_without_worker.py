"""Credentials come from what Temporal and the grant store know, not from a query the worker must answer.

A requester whose grant is active gets a token while no worker runs (a deploy, a
crash): the workflow is running, its ``JitStatus`` says active (set only once the
grant is provisioned and in the audit log) and the grant store has the live
grant. Nothing is lost by it: the grant's end is a durable timer, and
introspection reads the grant store.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from temporalio.testing import WorkflowEnvironment

from core.dev_identity import mint_dev_token
from core.temporal import connect
from tests.conftest import make_settings, serve_api
from worker import build_worker


async def test_an_active_grant_has_credentials_while_no_worker_runs(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    settings = make_settings(dev_env.client, tmp_path / "data")
    client = await connect(settings)
    api, task, base_url = await serve_api(settings)
    alice = {"Authorization": f"Bearer {mint_dev_token(settings, 'alice', ['engineers'])}"}
    body = {"resource": "k8s:prod/logs", "action": "read", "duration": "PT15M", "reason": "INC-8"}
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            with ThreadPoolExecutor(max_workers=4) as executor:
                async with build_worker(client, settings, executor):
                    created = await http.post("/v1/requests", json=body, headers=alice)
                    assert created.json()["status"] == "active", created.text
            # The worker is gone: a query cannot be answered...
            rid = created.json()["id"]
            # ...but the credentials can.
            creds = await http.get(f"/v1/requests/{rid}/credentials", headers=alice)
            assert creds.status_code == 200, creds.text
            assert creds.json()["access_token"].startswith("ey")
            # Not someone else's.
            bob = {"Authorization": f"Bearer {mint_dev_token(settings, 'bob', ['engineers'])}"}
            other = await http.get(f"/v1/requests/{rid}/credentials", headers=bob)
            assert other.status_code in (403, 404, 503)
    finally:
        api.should_exit = True
        await task
