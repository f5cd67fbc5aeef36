"""The baseline: the lifecycle's shape written directly on the Temporal SDK, nothing else.

    signal-with-start ("approve") -> issue activity -> timer -> revoke activity -> done

Run as a worker process (``python bench/baseline.py --address HOST:PORT --task-queue Q``)
with the project worker's settings: a 16-thread activity executor,
``max_concurrent_activities=16``, synchronous activities, every module passed
through the sandbox, the SDK's workflow cache (1,000) and sticky queue timeout.
No codec, no pydantic converter, no audit log, no search attributes, no grant
store: what is left is the server's and the SDK's cost, the ceiling for
the project's figures. ``settled`` (an update that returns once the issue
activity is done) is the baseline's answer to the API's create call, which waits
the same way for an auto-approved grant.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

STEP_TIMEOUT = timedelta(seconds=15)


@activity.defn
def issue(request_id: str) -> str:
    return request_id


@activity.defn
def revoke(request_id: str, expires_at: float) -> float:
    """Returns the lag: now minus when the grant was meant to end (seconds)."""
    return time.time() - expires_at


@workflow.defn
class BaselineWorkflow:
    def __init__(self) -> None:
        self._approved = False
        self._issued = False

    @workflow.signal
    def approve(self) -> None:
        self._approved = True

    @workflow.update
    async def settled(self) -> str:
        await workflow.wait_condition(lambda: self._issued)
        return "active"

    @workflow.run
    async def run(self, duration_s: float) -> float:
        await workflow.wait_condition(lambda: self._approved)
        rid = workflow.info().workflow_id
        await workflow.execute_activity(issue, rid, start_to_close_timeout=STEP_TIMEOUT)
        expires_at = workflow.now().timestamp() + duration_s
        self._issued = True
        await workflow.sleep(duration_s)
        return await workflow.execute_activity(revoke, args=[rid, expires_at], start_to_close_timeout=STEP_TIMEOUT)


async def start(client: Client, workflow_id: str, task_queue: str, duration_s: float):  # noqa: ANN201
    """Signal-with-start: the workflow and its approval in one call."""
    return await client.start_workflow(
        BaselineWorkflow.run, duration_s, id=workflow_id, task_queue=task_queue, start_signal="approve"
    )


async def serve(address: str, task_queue: str) -> None:
    # Run as a script this file is __main__, which the sandbox cannot pass through:
    # register the workflow and activities from the importable module instead.
    import baseline as this

    client = await Client.connect(address)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    with ThreadPoolExecutor(max_workers=16) as executor:  # as worker.py
        worker = Worker(
            client,
            task_queue=task_queue,
            workflows=[this.BaselineWorkflow],
            activities=[this.issue, this.revoke],
            activity_executor=executor,
            max_concurrent_activities=executor._max_workers,
            workflow_runner=SandboxedWorkflowRunner(
                restrictions=SandboxRestrictions.default.with_passthrough_all_modules()
            ),
        )
        async with worker:
            await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", required=True)
    parser.add_argument("--task-queue", required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.address, args.task_queue))


if __name__ == "__main__":
    main()
