"""A request whose workflow cannot answer a query (its task fails on the worker) is a 503, never a 500;
filing one while Temporal cannot find what it needs is a 503 to retry, never a 404."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from core.dev_identity import mint_dev_token
from core.temporal import workflow_id
from tests.conftest import Stack, make_settings, serve_api
from tests.test_bad_input import assert_error

FILED = {"resource": "k8s:prod/logs", "action": "read", "duration": "PT5M", "reason": "reading the logs"}


async def test_a_query_on_a_failing_workflow_is_503(stack: Stack) -> None:
    # An input the workflow cannot even decode: its first task fails, and is retried, forever.
    request_id = str(uuid.uuid4())
    client: Client = stack.client
    handle = await client.start_workflow(
        "AccessRequestWorkflow", {"not": "a request"}, id=workflow_id(request_id), task_queue=stack.settings.task_queue
    )
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while True:  # until the worker has tried (and failed) the first task
            history = await handle.fetch_history()
            if any(e.HasField("workflow_task_failed_event_attributes") for e in history.events):
                break
            assert asyncio.get_running_loop().time() < deadline, "the workflow task never failed"
            await asyncio.sleep(0.1)
        response = await stack.http.get(f"/v1/requests/{request_id}", headers=stack.auth("root", "jit-admins"))
        assert_error(response, 503, code="unavailable", says="workflow did not answer")
        assert response.headers["retry-after"] == "5"
    finally:
        await handle.terminate("test over")


async def test_filing_where_temporal_finds_nothing_is_503_never_404(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    # Temporal answers "not found" for a namespace it has not loaded (a restart in progress, or one
    # never registered): a request being filed is then not "no such request" but "try again".
    settings = make_settings(dev_env.client, tmp_path / "data", temporal_namespace=f"absent-{uuid.uuid4().hex[:8]}")
    server, task, base_url = await serve_api(settings)
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            alice = {"Authorization": f"Bearer {mint_dev_token(settings, 'alice', ['engineers'])}"}
            for key in (None, "retry-me"):
                headers = alice if key is None else {**alice, "Idempotency-Key": key}
                response = await http.post("/v1/requests", json=FILED, headers=headers)
                assert_error(response, 503, code="unavailable", says="Temporal could not file the request")
                assert "not found" in response.json()["error"]["message"]
                assert response.headers["retry-after"] == "1"
            # Nor is a request read then "no such request": Temporal cannot tell.
            response = await http.get(f"/v1/requests/{uuid.uuid4()}", headers=alice)
            assert_error(response, 503, code="unavailable", says="Namespace")
    finally:
        server.should_exit = True
        await task
