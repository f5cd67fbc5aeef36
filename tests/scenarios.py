"""Scripted lifecycles whose histories the replay test checks.

``python -m tests.scenarios OUT_DIR [SUFFIX]`` records them as JSON (against a dev
server it starts; existing files are kept) so that histories of today's code are committed and every
later change to the workflow must still replay them. After a change made safe by ``workflow.patched``,
record the new code's histories beside the old ones with a SUFFIX naming the patch
(``tests/histories/<scenario>.<SUFFIX>.json``).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from core.models import (
    AccessRequestInput,
    AcknowledgeInput,
    ApproveInput,
    CancelInput,
    DenyInput,
    ExtendInput,
    RevokeInput,
    StageSnapshot,
)
from core.temporal import DATA_CONVERTER, SEARCH_ATTRIBUTES
from tests.workflow_support import ALICE, BOB, CAROL, DANA, NOTIFY_INLINE, running_worker, start
from tests.workflow_support import request_input as make_input
from workflows.access_request import AccessRequestWorkflow


async def run_scenarios(client: Client, data_dir: Path, *, notify: bool = True) -> dict[str, WorkflowHandle]:
    """Each lifecycle branch once; returns finished workflows by scenario name.

    ``notify``: every request with a plan sending each event to the console, the
    requester's first inline (``notifications-inline-v1``); False for the inputs of
    before notifications.
    """
    handles: dict[str, WorkflowHandle] = {}

    def request_input(**kw: Any) -> AccessRequestInput:
        return make_input(notify=NOTIFY_INLINE if notify else None, **kw)

    async with running_worker(client, data_dir) as settings:
        h = await start(client, settings, request_input(approvals=2, duration_s=2, max_duration_s=60))
        await h.execute_update(AccessRequestWorkflow.approve, ApproveInput(actor=BOB))
        await h.execute_update(AccessRequestWorkflow.approve, ApproveInput(actor=CAROL, comment="ok"))
        await h.execute_update(AccessRequestWorkflow.extend, ExtendInput(actor=ALICE, duration_s=1, reason="more"))
        handles["approved_extended_expired"] = h

        h = await start(client, settings, request_input())
        await h.execute_update(AccessRequestWorkflow.deny, DenyInput(actor=BOB, reason="no"))
        handles["denied"] = h

        h = await start(client, settings, request_input())
        await h.execute_update(AccessRequestWorkflow.cancel, CancelInput(actor=ALICE))
        handles["cancelled"] = h

        h = await start(client, settings, request_input(approvals=0, duration_s=3600))
        await h.execute_update(AccessRequestWorkflow.settled)
        await h.execute_update(AccessRequestWorkflow.revoke, RevokeInput(actor=ALICE, reason="done"))
        handles["auto_approved_revoked"] = h

        h = await start(client, settings, request_input(approval_timeout_s=1))
        handles["timed_out"] = h

        stages = [
            StageSnapshot(name="owners", groups=["db-owners"]),
            StageSnapshot(name="data", groups=["data-owners"], escalate_after_s=3600, escalate_to=["data-leads"]),
        ]
        h = await start(client, settings, request_input(stages=stages, duration_s=3600))
        await h.execute_update(AccessRequestWorkflow.approve, ApproveInput(actor=BOB))
        await h.execute_update(AccessRequestWorkflow.approve, ApproveInput(actor=DANA))
        await h.execute_update(AccessRequestWorkflow.revoke, RevokeInput(actor=ALICE, reason="done"))
        handles["two_stages_revoked"] = h

        h = await start(client, settings, request_input(approvals=0, break_glass=True, duration_s=1))
        await h.execute_update(AccessRequestWorkflow.settled)
        await h.execute_update(AccessRequestWorkflow.acknowledge, AcknowledgeInput(actor=BOB, comment="ok"))
        handles["break_glass_reviewed"] = h

        # Cancelled from Temporal UI while active: revoked (history-timers-v1).
        h = await start(client, settings, request_input(approvals=0, duration_s=3600))
        await h.execute_update(AccessRequestWorkflow.settled)
        await h.cancel()
        handles["workflow_cancelled_revoked"] = h

        # An extension past the approval waits for an approver, then moves the grant.
        h = await start(client, settings, request_input(duration_s=2, max_duration_s=60, extension_approval=True))
        await h.execute_update(AccessRequestWorkflow.approve, ApproveInput(actor=BOB))
        await h.execute_update(AccessRequestWorkflow.extend, ExtendInput(actor=ALICE, duration_s=1, reason="more"))
        await h.execute_update(AccessRequestWorkflow.approve, ApproveInput(actor=CAROL, comment="ok"))
        handles["extension_reapproved_expired"] = h

        for handle in handles.values():
            await handle.result()
    return handles


async def _record(out: Path, suffix: str = "") -> None:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(Path(sys.executable).parent / "temporal"),
        search_attributes=SEARCH_ATTRIBUTES,
        data_converter=DATA_CONVERTER,
    )
    try:
        with tempfile.TemporaryDirectory() as tmp:
            handles = await run_scenarios(env.client, Path(tmp))
            out.mkdir(parents=True, exist_ok=True)
            for name, handle in handles.items():
                # Histories of older code stay as they were: they are the point.
                path = out / (f"{name}.{suffix}.json" if suffix else f"{name}.json")
                if not path.exists():
                    path.write_text((await handle.fetch_history()).to_json())
    finally:
        await env.shutdown()


if __name__ == "__main__":
    asyncio.run(_record(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else ""))
