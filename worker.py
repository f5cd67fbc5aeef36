"""The worker: runs AccessRequestWorkflow and the grant activities.

    python worker.py        (or: make run, which starts it for you)

Any number of workers can poll the same task queue; Temporal spreads the work.
Logs go to stderr as JSON lines (``JIT_LOG_FORMAT``, core/logging.py); metrics,
the project's and the Temporal SDK's, are served on
``http://JIT_WORKER_METRICS_HOST:JIT_WORKER_METRICS_PORT/metrics`` (core/metrics.py).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import warnings
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.audit import AuditActivities
from activities.clock import read_clock
from activities.grants import GrantActivities
from activities.notify import NotifyActivities
from activities.provisioning import ProvisioningActivities
from activities.reconcile import ReconcileActivities
from core.audit_anchors import ensure_anchor_schedule
from core.audit_store import open_audit_log
from core.catalog import Catalog
from core.grant_store import open_grant_store
from core.grants import GrantStore
from core.logging import setup_logging
from core.metrics import MetricsServer, WorkerMetrics, free_loopback_port, sdk_runtime, watch_gauges
from core.notify_config import load_notifications
from core.provisioners.postgres_config import load_password_secret
from core.reconcile_schedule import ensure_reconcile_schedule
from core.settings import Settings, get_settings
from core.temporal import connect
from workflows.access_request import AccessRequestWorkflow
from workflows.audit_anchor import AuditAnchorWorkflow
from workflows.reconciler import ReconcilerWorkflow


def build_worker(
    client: Client,
    settings: Settings,
    executor: ThreadPoolExecutor,
    metrics: WorkerMetrics | None = None,
    store: GrantStore | None = None,
) -> Worker:
    """``metrics``: where the activities record the project's metrics (a private registry if None).
    ``store``: the grant store (``open_grant_store(settings)`` if None)."""
    store = store or open_grant_store(settings)
    grants = GrantActivities(store, metrics)
    audit_log = open_audit_log(settings)
    audit = AuditActivities(audit_log)
    provisioning = ProvisioningActivities(
        password_secret=load_password_secret(settings.data_dir, settings.pg_password_secret),
        # The grant store's tombstone: a late grant retry never re-creates
        # access that a rollback already removed.
        is_revoked=lambda request_id: (row := store.lookup(request_id)) is not None and row.revoked_at is not None,
        metrics=metrics,
    )
    reconciler = ReconcileActivities(
        client, store, provisioning, audit_log, lambda: Catalog.load(settings.catalog_path), metrics
    )
    notify = NotifyActivities(load_notifications(settings.notifications_path), metrics, delivery_threads(settings))
    # More activity slots than executor threads, on purpose: the extra ones are for deliveries,
    # which are async and send on threads of their own. The SDK warns about the mismatch.
    warnings.filterwarnings("ignore", message="Worker max_concurrent_activities is", category=UserWarning)
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=[AccessRequestWorkflow, AuditAnchorWorkflow, ReconcilerWorkflow],
        activities=[
            grants.issue_grant,
            grants.extend_grant,
            grants.revoke_grant,
            provisioning.provision,
            provisioning.extend_provision,
            provisioning.deprovision,
            audit.append_audit,
            audit.read_audit_head,
            read_clock,
            reconciler.reconcile,
            notify.deliver,
        ],
        activity_executor=executor,
        # Deliveries (async, sending on their own threads) hold slots too, not threads.
        max_concurrent_activities=executor._max_workers + settings.notify_concurrency,
        max_cached_workflows=settings.worker_max_cached_workflows,
        max_concurrent_workflow_tasks=workflow_task_slots(settings.worker_max_cached_workflows),
        workflow_runner=_runner(settings),
        sticky_queue_schedule_to_start_timeout=timedelta(seconds=settings.worker_sticky_timeout_s),
        graceful_shutdown_timeout=timedelta(seconds=settings.worker_graceful_shutdown_s),
    )


def delivery_threads(settings: Settings) -> ThreadPoolExecutor:
    """The threads notifications are sent on, apart from ``executor``: a channel that hangs
    fills these, never the threads the grant-store writes and revocations run on."""
    return ThreadPoolExecutor(max_workers=settings.notify_concurrency, thread_name_prefix="notify")


def workflow_task_slots(max_cached: int) -> int:
    """Fewer workflow tasks at once than cached requests: one cache slot always free.

    A query on a request out of cache replays it into a slot. When every slot
    holds a request that is running local activities (grant-store and audit
    writes), the SDK evicts one mid-task, and that request stalls until its
    workflow task times out (10 s): a grant ends that much late. The SDK's own
    default is 100 slots.
    """
    return max(2, min(100, max_cached - 1))


def _runner(settings: Settings) -> SandboxedWorkflowRunner:
    """The sandbox still refuses non-deterministic calls (``datetime.now``, I/O) either way.

    Passing every module through means a module is imported once per process
    instead of once per workflow run: about half the memory and a third less
    CPU per request (docs/benchmarks.md). The price is the rule it relies on:
    modules under workflows/ hold no mutable module-level state.
    """
    if not settings.worker_sandbox_passthrough:
        return SandboxedWorkflowRunner()
    return SandboxedWorkflowRunner(restrictions=SandboxRestrictions.default.with_passthrough_all_modules())


async def main() -> None:
    settings = get_settings()
    setup_logging(settings.log_format, settings.log_level)
    log = logging.getLogger("jit.worker")
    metrics = WorkerMetrics()
    server: MetricsServer | None = None
    sdk_address = None
    if settings.worker_metrics_port:
        sdk_address = f"127.0.0.1:{free_loopback_port()}"
        try:
            server = MetricsServer(
                metrics.registry, settings.worker_metrics_host, settings.worker_metrics_port, sdk_address
            )
        except OSError as e:
            # Revoking access on time matters more than being scraped: run, and say so loudly.
            log.error(
                "cannot serve metrics on %s:%d (%s): running without",
                settings.worker_metrics_host,
                settings.worker_metrics_port,
                e,
            )
            sdk_address = None
    client = await connect(settings, runtime=sdk_runtime(sdk_address))
    store = open_grant_store(settings)
    gauges = asyncio.create_task(watch_gauges(client, store, settings.task_queue, metrics), name="gauges")
    try:
        with ThreadPoolExecutor(max_workers=16) as executor:
            worker = build_worker(client, settings, executor, metrics, store)
            if server is not None:
                server.start()
                log.info("metrics on http://%s:%d/metrics", settings.worker_metrics_host, server.port)
            log.info("polling task queue %s on %s", settings.task_queue, settings.temporal_address)
            # Stop on SIGINT/SIGTERM (Ctrl-C, docker stop): finish in-flight
            # tasks, then leave; letting KeyboardInterrupt tear down the SDK's
            # runtime mid-flight crashes the interpreter at exit.
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            async with worker:
                await ensure_anchor_schedule(client, settings)
                await ensure_reconcile_schedule(client, settings)
                await stop.wait()
            log.info("worker stopped")
    finally:
        gauges.cancel()
        store.close()
        if server is not None:
            server.close()


if __name__ == "__main__":
    asyncio.run(main())
