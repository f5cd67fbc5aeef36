"""AuditAnchorWorkflow: record the audit log's head in Temporal, where the log's writer cannot rewrite it.

Started every ``JIT_AUDIT_ANCHOR_INTERVAL_S`` by a Temporal Schedule
(core/audit_anchors.py ``ensure_anchor_schedule``, at worker start). One short
run per anchor: read the head (the newest record's position and hash, and the
count) with an activity, keep it as the run's result and in its memo, end. The
activity's result is in the run's history; the memo lets ``jit audit verify``
read every anchor from one visibility listing instead of one history each.
No messages; no state beyond the run.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.audit import AuditActivities
    from core.audit_anchors import ANCHOR_MEMO, ANCHOR_WORKFLOW
    from core.audit_chain import ChainHead

# A store that stays down fails the run (visible in Temporal UI); the schedule's next run tries again.
READ_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=10), maximum_attempts=5
)


@workflow.defn(name=ANCHOR_WORKFLOW)
class AuditAnchorWorkflow:
    @workflow.run
    async def run(self) -> ChainHead:
        head = await workflow.execute_activity_method(
            AuditActivities.read_audit_head,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=READ_RETRY,
            summary="read the audit log's head",
        )
        workflow.upsert_memo({ANCHOR_MEMO: head})
        return head
