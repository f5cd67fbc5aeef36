"""The console channel: every notification printed in the worker's output.

The default of ``make run`` (config/notifications.yaml), so a newcomer sees
what Slack or email would say without setting anything up.
"""

from __future__ import annotations

import sys
import threading
from typing import TextIO

from activities.channels.message import as_text, build
from core.notify_models import Delivery, MessageRef

_LOCK = threading.Lock()  # one message at a time, never interleaved


class ConsoleSender:
    def __init__(self, out: TextIO | None = None) -> None:
        self._out = out

    def send(self, delivery: Delivery) -> MessageRef | None:
        body = as_text(build(delivery.event))
        head = f"── notification to {delivery.route.label} ({delivery.event.kind.value}) "
        lines = [("  " + line).rstrip() for line in body.splitlines()]
        text = "\n".join([head + "─" * max(0, 72 - len(head)), *lines, ""])
        out = self._out or sys.stdout
        with _LOCK:
            out.write(text + "\n")
            out.flush()
        return None
