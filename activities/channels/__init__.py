"""Where notifications go: one module per channel type of config/notifications.yaml.

A channel is built once per worker from its configuration (reading its secrets
from the environment then) and sends one :class:`Delivery` at a time from the
``deliver`` activity's thread (activities/notify.py). ``send`` raises on any
failure, so the activity retries; it returns a :class:`MessageRef` when the
message can be updated in place later (Slack), else None.
"""

from __future__ import annotations

from typing import Protocol

from core.notify_models import Delivery, MessageRef


class Sender(Protocol):
    def send(self, delivery: Delivery) -> MessageRef | None: ...
