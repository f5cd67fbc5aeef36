"""Append lifecycle events to the hash-chained audit log (idempotent by event id)."""

from __future__ import annotations

from temporalio import activity

from core.audit import AuditEvent
from core.audit_store import AuditStore


class AuditActivities:
    def __init__(self, log: AuditStore):
        self._log = log

    @activity.defn
    def append_audit(self, events: list[AuditEvent]) -> int:
        added = self._log.append(events)
        activity.logger.info("audit events written", extra={"count": added})
        return added
