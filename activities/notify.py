"""The ``deliver`` activity: one notification, one route, through the route's channel.

Started by the workflow without waiting (workflows/notifications.py), retried
with backoff up to ``Delivery.max_attempts`` within a bounded total time: a
channel that is down costs a few attempts, never the grant. The last attempt
that fails counts in ``jit_notifications_failed_total`` and gives up.
"""

from __future__ import annotations

import logging

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.channels import Sender
from activities.channels.console import ConsoleSender
from core.metrics import WorkerMetrics
from core.notify_config import ConsoleChannel, EmailChannel, NotificationConfig, SlackChannel, WebhookChannel
from core.notify_models import Delivery, MessageRef

log = logging.getLogger("jit.worker.notify")


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
    def __init__(self, config: NotificationConfig | None, metrics: WorkerMetrics | None = None) -> None:
        self._senders = build_senders(config)
        self._metrics = metrics or WorkerMetrics()

    @activity.defn(name="deliver_notification")
    def deliver(self, delivery: Delivery) -> MessageRef | None:
        route, event = delivery.route, delivery.event
        found = self._senders.get(route.channel)
        if found is None:
            self._metrics.notifications_failed.labels(channel="unknown", kind=event.kind.value).inc()
            raise ApplicationError(
                f"no channel named {route.channel!r} in this worker's notifications file", non_retryable=True
            )
        kind, sender = found
        try:
            ref = sender.send(delivery)
        except Exception as e:
            attempt = activity.info().attempt
            # The exception's text only: a channel's errors name hosts and statuses, never its secrets.
            problem = f"{type(e).__name__}: {e}"[:300]
            if attempt >= delivery.max_attempts:
                self._metrics.notifications_failed.labels(channel=kind, kind=event.kind.value).inc()
                log.error(
                    "notification %s to %s via %s given up after %d attempts: %s",
                    event.kind.value,
                    route.label,
                    route.channel,
                    attempt,
                    problem,
                    extra={"request_id": event.request_id},
                )
                raise ApplicationError(f"given up after {attempt} attempts: {problem}", non_retryable=True) from e
            log.warning(
                "notification %s to %s via %s failed (attempt %d of %d): %s",
                event.kind.value,
                route.label,
                route.channel,
                attempt,
                delivery.max_attempts,
                problem,
                extra={"request_id": event.request_id},
            )
            raise
        self._metrics.notifications_sent.labels(channel=kind, kind=event.kind.value).inc()
        return ref
