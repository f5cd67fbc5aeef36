"""The ``deliver`` activity: one notification to each of its routes, through each route's channel.

Started by the workflow without waiting (workflows/notifications.py), retried
with backoff up to ``Dispatch.max_attempts`` within a bounded total time: a
channel that is down costs a few attempts, never the grant. A route that
still fails on the last attempt counts in ``jit_notifications_failed_total``
and is given up; the others are delivered once.

For console and webhook routes the workflow makes attempt 1 a local activity
(``Dispatch.inline_ms`` set): sent at once, each route for at most that long,
and what fails comes back in ``Dispatched.failed`` for the retried activity
instead of raising. A channel that failed inline, or answered in more than half
its time, is held back from inline attempts for ``HOLD_BACK_S`` in this worker,
so one that is down or slow holds a workflow task up once, not at every event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.channels import Sender
from activities.channels.console import ConsoleSender
from core.metrics import WorkerMetrics
from core.notify_config import ConsoleChannel, EmailChannel, NotificationConfig, SlackChannel, WebhookChannel
from core.notify_models import Delivery, Dispatch, Dispatched, MessageRef

log = logging.getLogger("jit.worker.notify")
# A channel that failed an inline attempt, or answered slowly, is not tried inline again for
# this long (per worker): its deliveries go straight to the retried activity.
HOLD_BACK_S = 60.0


def build_senders(config: NotificationConfig | None) -> dict[str, tuple[str, Sender]]:
    """Channel name → (type, sender), built once per worker from the configuration."""
    senders: dict[str, tuple[str, Sender]] = {}
    for name, channel in (config.channels if config else {}).items():
        senders[name] = (channel.type, _sender(channel))
    return senders


def _sender(channel: ConsoleChannel | SlackChannel | EmailChannel | WebhookChannel) -> Sender:
    # Imported here: a worker loads the client libraries of the channels it uses only.
    if isinstance(channel, SlackChannel):
        from activities.channels.slack import SlackSender

        return SlackSender(channel)
    if isinstance(channel, EmailChannel):
        from activities.channels.email import EmailSender

        return EmailSender(channel)
    if isinstance(channel, WebhookChannel):
        from activities.channels.webhook import WebhookSender

        return WebhookSender(channel)
    return ConsoleSender()


class NotifyActivities:
    """``threads``: where the channels' blocking sends run, never the worker's activity executor.

    ``deliver`` is an async activity on the workflow's own task queue (so the
    server hands it to the worker with the workflow task that starts it: no extra
    round trip), and sends on threads of its own: a channel that hangs, each
    attempt waiting out the channel's timeout, fills those and never a thread
    that the grant-store writes and revocations need.
    """

    def __init__(
        self,
        config: NotificationConfig | None,
        metrics: WorkerMetrics | None = None,
        threads: ThreadPoolExecutor | None = None,
    ) -> None:
        self._senders = build_senders(config)
        self._metrics = metrics or WorkerMetrics()
        self._threads = threads or ThreadPoolExecutor(max_workers=8, thread_name_prefix="notify")
        self._held_back: dict[str, float] = {}  # channel → until (monotonic): no inline attempts

    @activity.defn(name="deliver_notification")
    async def deliver(self, dispatch: Dispatch) -> Dispatched:
        """Send ``dispatch.event`` to each route not yet done; retry (raise) while any failed.

        An inline attempt (``dispatch.inline_ms``) returns what failed instead: :meth:`_inline`.

        Routes done in an earlier attempt are in its heartbeat details and are
        skipped: a retry for a failing Slack never sends the email twice. On the
        last attempt, what still fails is counted and given up.
        """
        if dispatch.inline_ms is not None:
            return await self._inline(dispatch, dispatch.inline_ms / 1000)
        info = activity.info()
        done: dict[str, dict | None] = dict(info.heartbeat_details[0]) if info.heartbeat_details else {}
        failed: list[tuple[Delivery, str, str]] = []
        loop = asyncio.get_running_loop()
        for i, delivery in enumerate(dispatch.deliveries()):
            if str(i) in done:
                continue
            try:
                kind, ref = await loop.run_in_executor(self._threads, self._send, delivery)
            except _Failed as e:
                failed.append((delivery, e.channel_type, e.problem))
                continue
            self._metrics.notifications_sent.labels(channel=kind, kind=dispatch.event.kind.value).inc()
            done[str(i)] = ref.model_dump() if ref else None
        if failed:
            attempt = info.attempt + dispatch.attempts_made
            last = attempt >= dispatch.max_attempts
            for delivery, channel_type, problem in failed:
                self._report(delivery, channel_type, problem, attempt, last)
            if not last:
                # What is done, for the retry to skip: recorded with this attempt's failure. Only
                # here: a heartbeat is a call to the server, and most dispatches never fail.
                activity.heartbeat(done)
                raise ApplicationError(f"{len(failed)} of {len(dispatch.routes)} deliveries failed; retrying")
        return Dispatched(
            refs=[
                MessageRef.model_validate(done[str(i)]) if done.get(str(i)) else None
                for i in range(len(dispatch.routes))
            ]
        )

    async def _inline(self, dispatch: Dispatch, limit_s: float) -> Dispatched:
        """Attempt 1, run as a local activity inside the workflow task: every route at once,
        each for at most ``limit_s``. What fails, takes longer or is held back is handed back
        for the retried activity; given up here only when no attempt is left."""
        deliveries = dispatch.deliveries()
        outcomes = await asyncio.gather(*(self._try_inline(d, limit_s) for d in deliveries))
        return Dispatched(
            refs=[ref for _, ref in outcomes],
            failed=[i for i, (outcome, _) in enumerate(outcomes) if outcome == "failed"],
            held_back=[i for i, (outcome, _) in enumerate(outcomes) if outcome == "held back"],
        )

    async def _try_inline(self, delivery: Delivery, limit_s: float) -> tuple[str, MessageRef | None]:
        channel = delivery.route.channel
        if self._held_back.get(channel, 0.0) > time.monotonic():
            self._deferred(delivery, "held back")
            return "held back", None
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        try:
            # On timeout the send goes on in its thread; the retry may repeat it, which
            # inline channels take without harm (the webhook's Idempotency-Key).
            kind, ref = await asyncio.wait_for(loop.run_in_executor(self._threads, self._send, delivery), limit_s)
        except _Failed as e:
            return self._inline_failed(delivery, e.channel_type, e.problem, "failed")
        except TimeoutError:
            problem = f"no answer within {limit_s:g}s"
            return self._inline_failed(delivery, self._type_of(channel), problem, "no answer in time")
        if time.monotonic() - started > limit_s / 2:
            # Delivered, but slowly: this channel's next events go to activities for a while
            # rather than hold workflow tasks up this long each.
            self._held_back[channel] = time.monotonic() + HOLD_BACK_S
        else:
            self._held_back.pop(channel, None)
        self._metrics.notifications_sent.labels(channel=kind, kind=delivery.event.kind.value).inc()
        return "sent", ref

    def _inline_failed(self, delivery: Delivery, channel_type: str, problem: str, why: str) -> tuple[str, None]:
        self._held_back[delivery.route.channel] = time.monotonic() + HOLD_BACK_S
        last = delivery.max_attempts <= 1
        self._report(delivery, channel_type, problem, 1, last)
        if not last:
            self._deferred(delivery, why)
        return "failed", None

    def _deferred(self, delivery: Delivery, why: str) -> None:
        kind = self._type_of(delivery.route.channel)
        self._metrics.notifications_deferred.labels(channel=kind, kind=delivery.event.kind.value, why=why).inc()

    def _type_of(self, channel: str) -> str:
        return self._senders[channel][0] if channel in self._senders else "unknown"

    def _send(self, delivery: Delivery) -> tuple[str, MessageRef | None]:
        found = self._senders.get(delivery.route.channel)
        if found is None:
            raise _Failed("unknown", f"no channel named {delivery.route.channel!r} in this worker's notifications file")
        kind, sender = found
        try:
            return kind, sender.send(delivery)
        except Exception as e:
            # The exception's text only: a channel's errors name hosts and statuses, never its secrets.
            raise _Failed(kind, f"{type(e).__name__}: {e}"[:300]) from e

    def _report(self, delivery: Delivery, channel_type: str, problem: str, attempt: int, last: bool) -> None:
        event, route = delivery.event, delivery.route
        if last:
            self._metrics.notifications_failed.labels(channel=channel_type, kind=event.kind.value).inc()
        (log.error if last else log.warning)(
            "notification %s to %s via %s %s (attempt %d of %d): %s",
            event.kind.value,
            route.label,
            route.channel,
            "given up" if last else "failed",
            attempt,
            delivery.max_attempts,
            problem,
            extra={"request_id": event.request_id},
        )


class _Failed(Exception):
    def __init__(self, channel_type: str, problem: str) -> None:
        super().__init__(problem)
        self.channel_type = channel_type
        self.problem = problem
