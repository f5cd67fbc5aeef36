"""A request whose workflow cannot answer a query (its task fails on the worker) is a 503, never a 500."""

from __future__ import annotations

import asyncio
import uuid

from temporalio.client import Client

from core.temporal import workflow_id
from tests.conftest import Stack
from tests.test_bad_input import assert_error


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
