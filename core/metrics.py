"""The worker's metrics: the project's own and the Temporal SDK's, on one port.

``GET http://<host>:<JIT_WORKER_METRICS_PORT>/metrics`` (default 9464; 0 = off)
answers in the Prometheus text format with

- the project's metrics (``prometheus_client``, one registry per worker)::

    jit_grants_active                      gauge      live grants in the grant store
    jit_approvals_pending                  gauge      requests waiting for approval (visibility count)
    jit_time_to_approve_seconds            histogram  filed -> last approval, observed when the grant is issued
    jit_revocation_lag_seconds             histogram  revoked at - intended expiry (0 for an early revoke)
    jit_provisioner_failures_total         counter    failed provision/extend/deprovision attempts, by provisioner
    jit_orphans_revoked_total              counter    access the reconciler revoked: its workflow had ended outside jit-access
    jit_notifications_sent_total           counter    notifications delivered, by channel type and event
    jit_notifications_failed_total         counter    notifications given up after their last attempt
    jit_notifications_deferred_total       counter    first attempts not done inline (failed, no answer in time,
                                                      channel held back): sent on as retried activities

- then the Temporal SDK's runtime metrics (``temporal_*``: task slots, poll and
  schedule-to-start latencies, sticky cache, ...). The SDK's own Prometheus
  exporter listens on a loopback port chosen at start-up; this server appends
  what it says, so one scrape target per worker has both.

The two gauges are refreshed every 15 s (:func:`watch_gauges`): a count of the
grant store's live rows and one visibility count
(``JitStatus = 'pending'`` on this task queue). Every worker reports the same
values; aggregate them with ``max``, not ``sum``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import urllib.request
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from temporalio.client import Client
from temporalio.runtime import LogForwardingConfig, LoggingConfig, PrometheusConfig, Runtime, TelemetryConfig

from core.grants import GrantStore
from core.models import Status
from core.temporal import SA_STATUS

log = logging.getLogger("jit.worker.metrics")

GAUGE_INTERVAL_S = 15.0
# Approvals take minutes to days; revocation lag should be seconds (the timer fires on time).
TIME_TO_APPROVE_BUCKETS = (10, 30, 60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600, 24 * 3600, 72 * 3600)
REVOCATION_LAG_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


class WorkerMetrics:
    """The project's metrics of one worker, in their own registry (tests run many workers per process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.grants_active = Gauge(
            "jit_grants_active", "Grants live in the grant store (not revoked, not expired)", registry=self.registry
        )
        self.approvals_pending = Gauge(
            "jit_approvals_pending", "Access requests waiting for an approval", registry=self.registry
        )
        self.time_to_approve = Histogram(
            "jit_time_to_approve_seconds",
            "From filing to the last required approval, for requests that needed one",
            buckets=TIME_TO_APPROVE_BUCKETS,
            registry=self.registry,
        )
        self.revocation_lag = Histogram(
            "jit_revocation_lag_seconds",
            "When the grant was revoked minus when it was meant to expire (0 when revoked early)",
            buckets=REVOCATION_LAG_BUCKETS,
            registry=self.registry,
        )
        self.provisioner_failures = Counter(
            "jit_provisioner_failures",
            "Failed attempts to provision, extend or deprovision access in a target system",
            ["provisioner"],
            registry=self.registry,
        )
        self.orphans_revoked = Counter(
            "jit_orphans_revoked",
            "Grants or database roles the reconciler revoked because their request's workflow had ended "
            "outside jit-access (terminated in Temporal UI, failed): each one is an alert",
            registry=self.registry,
        )
        self.notifications_sent = Counter(
            "jit_notifications_sent",
            "Notifications delivered, by channel type and event",
            ["channel", "kind"],
            registry=self.registry,
        )
        self.notifications_deferred = Counter(
            "jit_notifications_deferred",
            "Notifications whose inline first attempt did not deliver them (failed, no answer within inline_ms, "
            "or the channel held back after a failure or a slow answer), sent on as retried activities; "
            "by channel type, event, why",
            ["channel", "kind", "why"],
            registry=self.registry,
        )
        self.notifications_failed = Counter(
            "jit_notifications_failed",
            "Notifications given up after their last attempt (the channel kept failing), by channel type and event",
            ["channel", "kind"],
            registry=self.registry,
        )

    def observe_revocation(self, intended_expiry: datetime, revoked_at: datetime) -> None:
        self.revocation_lag.observe(max(0.0, (revoked_at - intended_expiry).total_seconds()))

    def observe_approval(self, requested_at: datetime, approved_at: datetime) -> None:
        self.time_to_approve.observe(max(0.0, (approved_at - requested_at).total_seconds()))


# -- the Temporal SDK's metrics ---------------------------------------------------------


def free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sdk_runtime(sdk_metrics_address: str | None) -> Runtime:
    """A Temporal runtime exporting its metrics on ``sdk_metrics_address`` (if any), its logs to Python's."""
    return Runtime(
        telemetry=TelemetryConfig(
            logging=LoggingConfig(
                filter=LoggingConfig.default.filter,
                forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
            ),
            metrics=(
                PrometheusConfig(
                    bind_address=sdk_metrics_address, counters_total_suffix=True, durations_as_seconds=True
                )
                if sdk_metrics_address
                else None
            ),
        )
    )


# -- the exporter ------------------------------------------------------------------------


class MetricsServer:
    """``GET /metrics``: the registry's metrics, then the SDK exporter's (if any), as Prometheus text."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int, sdk_metrics_address: str | None) -> None:
        sdk_url = f"http://{sdk_metrics_address}/metrics" if sdk_metrics_address else None

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if self.path.split("?", 1)[0] not in ("/metrics", "/"):
                    self.send_error(404)
                    return
                body = generate_latest(registry)
                if sdk_url:
                    body += _fetch(sdk_url)
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE_LATEST)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet: scrapes are no news
                pass

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="worker-metrics", daemon=True)

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def _fetch(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our own loopback http:// URL
            text: bytes = response.read()
    except OSError as e:
        log.warning("Temporal SDK metrics unavailable at %s: %s", url, e)
        return b"# Temporal SDK metrics unavailable\n"
    return text if text.endswith(b"\n") or not text else text + b"\n"


# -- the gauges ----------------------------------------------------------------------------


def pending_query(task_queue: str) -> str:
    return f"{SA_STATUS.name} = '{Status.PENDING}' AND ExecutionStatus = 'Running' AND TaskQueue = '{task_queue}'"


async def refresh_gauges(client: Client, store: GrantStore, task_queue: str, metrics: WorkerMetrics) -> None:
    """One refresh of the gauges; a failure keeps the last values (and is logged)."""
    try:
        metrics.grants_active.set(await asyncio.to_thread(store.count_live, datetime.now(UTC)))
        pending = await client.count_workflows(pending_query(task_queue))
        metrics.approvals_pending.set(pending.count)
    except Exception as e:  # never let a metric take the worker down
        log.warning("could not refresh the gauges: %s", e)


async def watch_gauges(
    client: Client, store: GrantStore, task_queue: str, metrics: WorkerMetrics, interval_s: float = GAUGE_INTERVAL_S
) -> None:
    """Refresh the gauges every ``interval_s`` seconds until cancelled."""
    while True:
        await refresh_gauges(client, store, task_queue, metrics)
        await asyncio.sleep(interval_s)
