"""Where the reconciler runs from: its schedule, and a run for one request."""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from core.models import ReconcileInput, ReconcileReport
from core.schedules import ensure_schedule, periodic
from core.settings import Settings

RECONCILER_WORKFLOW = "ReconcilerWorkflow"
RECONCILE_ID_PREFIX = "jit-reconcile-"


def schedule_id(settings: Settings) -> str:
    return f"{RECONCILE_ID_PREFIX}{settings.task_queue}"


async def ensure_reconcile_schedule(client: Client, settings: Settings) -> None:
    schedule = periodic(
        RECONCILER_WORKFLOW,
        id=schedule_id(settings),
        task_queue=settings.task_queue,
        every_s=settings.reconcile_interval_s,
        args=[ReconcileInput()],
    )
    await ensure_schedule(
        client,
        schedule_id(settings),
        schedule,
        missing="access stranded by a workflow terminated in Temporal UI is not revoked",
    )


async def reconcile_now(client: Client, settings: Settings, request_ids: list[str] | None = None) -> ReconcileReport:
    """Run the reconciler once and wait for it; for one request, callers at once join one run."""
    suffix = f"request-{request_ids[0]}" if request_ids and len(request_ids) == 1 else "all"
    return await client.execute_workflow(
        RECONCILER_WORKFLOW,
        ReconcileInput(request_ids=request_ids),
        id=f"{schedule_id(settings)}-{suffix}",
        task_queue=settings.task_queue,
        result_type=ReconcileReport,
        execution_timeout=timedelta(minutes=5),
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
    )
