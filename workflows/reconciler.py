"""ReconcilerWorkflow: revoke access whose request's workflow ended outside jit-access.

Every request's own workflow revokes its access, whatever crashes in between;
only a workflow that is *ended* from outside (terminated in Temporal UI or with
the ``temporal`` CLI, or failed by a bug) cannot. A Temporal Schedule runs this
workflow every ``JIT_RECONCILE_INTERVAL_S`` (60 s by default; set up at worker
start by core/reconcile_schedule.py), and ``POST …/revoke`` runs it for
one request. One activity does the work (activities/reconcile.py): what it
revoked is its result, in this run's history, and in the audit log as
``orphan_revoked``.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.reconcile import ReconcileActivities
    from core.models import ReconcileInput, ReconcileReport
    from core.reconcile_schedule import RECONCILER_WORKFLOW


@workflow.defn(name=RECONCILER_WORKFLOW)
class ReconcilerWorkflow:
    @workflow.run
    async def run(self, input: ReconcileInput) -> ReconcileReport:
        return await workflow.execute_activity_method(
            ReconcileActivities.reconcile,
            input,
            start_to_close_timeout=timedelta(minutes=4),
            # It heartbeats every 5 s whatever it is doing: a run on a worker that died is
            # retried elsewhere within this, not after the 4-minute timeout.
            heartbeat_timeout=timedelta(seconds=15),
            retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=10)),
            summary="revoke orphaned access" if input.request_ids is None else f"revoke {input.request_ids[0]}"[:100],
        )
