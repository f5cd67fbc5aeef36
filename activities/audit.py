"""Append lifecycle events to the hash-chained audit log (idempotent by event id); read its head for the anchor."""

from __future__ import annotations

from temporalio import activity

from core.audit import AuditEvent
from core.audit_chain import ChainHead
from core.audit_store import AuditStore


class AuditActivities:
    def __init__(self, log: AuditStore):
        self._log = log

    @activity.defn
    def append_audit(self, events: list[AuditEvent]) -> int:
        added = self._log.append(events)
        activity.logger.info("audit events written", extra={"count": added})
        return added

    @activity.defn
    def read_audit_head(self) -> ChainHead:
        """The newest record's position and hash, and the count: what the anchor workflow records."""
        return self._log.head()
