"""The reconciler's one activity: find access whose request no longer runs, and take it away.

A request's workflow is what ends its access. A workflow that ends any other
way — terminated from Temporal UI or the CLI, failed by a bug — leaves it in
place: a grant-store row no tombstone closed, a database role nobody drops.
This activity (run every minute by ``ReconcilerWorkflow``, and for one request
by ``POST …/revoke``) finds both:

- grant-store rows without a tombstone whose workflow is not running;
- provisioner objects (PostgreSQL ``jit_`` roles of every catalog database)
  of a request this deployment recorded, whose workflow is not running;

and revokes them with the same steps a workflow takes (tombstone first, then
``ProvisioningActivities.revoke_and_verify``), writes ``orphan_revoked`` to the
audit log, and raises the alert: an ERROR log line and
``jit_orphans_revoked_total``. Idempotent: a second run finds nothing.

Async (it asks Temporal about workflows); the blocking store and database work
runs in threads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from activities.provisioners.base import GrantSpec
from activities.provisioners.postgres import PostgresProvisioner
from activities.provisioning import ProvisioningActivities
from core import provisioners
from core.audit import AuditEvent, AuditEventType
from core.audit_store import AuditStore
from core.catalog import Catalog
from core.grants import GrantRow, GrantStore
from core.metrics import WorkerMetrics
from core.models import AccessRequestInput, OrphanRevoked, ReconcileInput, ReconcileReport, Status
from core.temporal import SA_STATUS, WORKFLOW_ID_PREFIX, workflow_id

# The request workflow's type name (workflows/access_request.py; not imported: activities sit below it).
AccessRequestWorkflow = "AccessRequestWorkflow"

log = logging.getLogger("jit.reconciler")
REASON = "orphaned: the request's workflow ended outside jit-access"
# The audit event's place after anything the workflow itself numbered.
ORPHAN_SEQ = 1_000_000
# Heartbeats go out this often whatever the run is doing (a slow database listing, a revoke
# waiting on locks): the workflow's heartbeat timeout, a few of these, is then how soon a run
# on a worker that died is retried elsewhere.
HEARTBEAT_EVERY_S = 5.0


class ReconcileActivities:
    def __init__(
        self,
        client: Client,
        store: GrantStore,
        provisioning: ProvisioningActivities,
        audit: AuditStore,
        catalog: Callable[[], Catalog],
        metrics: WorkerMetrics | None = None,
    ):
        self._client = client
        self._store = store
        self._provisioning = provisioning
        self._audit = audit
        self._catalog = catalog
        self._metrics = metrics or WorkerMetrics()

    @activity.defn
    async def reconcile(self, input: ReconcileInput) -> ReconcileReport:
        """Cost per run, whatever the number of live grants: one visibility listing of the
        requests that ended with access live, one role listing per catalog database, and one
        ``describe`` per role whose grant is already tombstoned (a revocation under way or stranded)."""
        beating = asyncio.create_task(_keep_beating())
        try:
            return await self._reconcile(input)
        finally:
            beating.cancel()

    async def _reconcile(self, input: ReconcileInput) -> ReconcileReport:
        report = ReconcileReport()
        wanted = set(input.request_ids) if input.request_ids is not None else None
        if wanted is None:
            closed = await self._ended_while_live()
        else:
            closed = {i: s for i in wanted if (s := await self._workflow_status(i)) != "running"}
        roles = await self._role_owners(wanted)
        for request_id in sorted(set(closed) | set(roles)):
            report.checked += 1
            row = await asyncio.to_thread(self._store.lookup, request_id)
            status = closed.get(request_id)
            if status is None:
                # A role whose workflow ended normally has a tombstone: only those are worth a look.
                if row is None or row.revoked_at is None:
                    continue
                status = await self._workflow_status(request_id)
                if status == "running":
                    continue
            elif request_id not in roles and (row is None or row.revoked_at is not None):
                continue  # nothing live left: it never got access, or its tombstone is written
            # Whatever the workflow left: the grant row, and the roles of any catalog database.
            spec = await self._spec(request_id, row, roles.get(request_id))
            removed = await asyncio.to_thread(self._revoke, request_id, spec)
            report.revoked.append(OrphanRevoked(request_id=request_id, workflow_status=status, removed=removed))
        return report

    async def _ended_while_live(self) -> dict[str, str]:
        """Requests whose workflow is closed while its last published status is not an end
        (a workflow that ends by itself publishes its end first): terminated, or failed."""
        statuses = ", ".join(f"'{s.value}'" for s in Status if not s.is_terminal)
        query = (
            f"WorkflowType = '{AccessRequestWorkflow}' AND ExecutionStatus != 'Running'"
            f" AND {SA_STATUS.name} IN ({statuses})"
        )
        return {
            w.id.removeprefix(WORKFLOW_ID_PREFIX): (w.status.name.lower() if w.status else "unknown")
            async for w in self._client.list_workflows(query)
        }

    async def _workflow_status(self, request_id: str) -> str:
        try:
            desc = await self._client.get_workflow_handle(workflow_id(request_id)).describe()
        except RPCError as e:
            if e.status == RPCStatusCode.NOT_FOUND:
                return "not found"
            raise
        if desc.status == WorkflowExecutionStatus.RUNNING:
            return "running"
        return desc.status.name.lower() if desc.status else "unknown"

    async def _role_owners(self, wanted: set[str] | None) -> dict[str, GrantSpec]:
        """Request id → a spec for the catalog entry whose database still has a role of it."""
        owners: dict[str, GrantSpec] = {}
        seen_dsns: set[str] = set()
        for entry in self._catalog().entries():
            settings = entry.provisioner
            if provisioners.type_of(settings) != provisioners.POSTGRES or str(settings.get("dsn_env")) in seen_dsns:
                continue
            seen_dsns.add(str(settings.get("dsn_env")))
            try:
                provisioner = self._provisioning.build(_spec("probe", entry.id, "", settings))
                assert isinstance(provisioner, PostgresProvisioner)
                ids = await asyncio.to_thread(provisioner.request_ids)
            except Exception as e:  # not configured on this worker, or down: looked at next time
                log.warning("reconciler cannot list the roles of %s: %s", entry.id, e)
                continue
            for request_id in ids:
                # Only roles this deployment made (its grant store has the request): a
                # cluster may hold roles of another deployment, whose reconciler owns them.
                if (wanted is None or request_id in wanted) and self._store.lookup(request_id) is not None:
                    owners.setdefault(request_id, _spec(request_id, entry.id, "", settings))
        return owners

    async def _spec(self, request_id: str, row: GrantRow | None, role_owner: GrantSpec | None) -> GrantSpec | None:
        """The provisioner block the request was granted with: from its workflow's input if it
        can be read (the exact snapshot), else from the catalog entry whose database holds its role."""
        try:
            async for event in self._client.get_workflow_handle(workflow_id(request_id)).fetch_history_events():
                if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
                    payloads = event.workflow_execution_started_event_attributes.input.payloads
                    (req,) = await self._client.data_converter.decode(payloads, [AccessRequestInput])
                    return _spec(request_id, req.resource, req.action, req.policy.provisioner, req.requester.sub)
                break
        except RPCError:
            pass  # history gone (retention): the catalog says where its role is
        return role_owner or (_spec(request_id, row.resource, row.action, {}) if row else None)

    def _revoke(self, request_id: str, spec: GrantSpec | None) -> list[str]:
        """Tombstone first (tokens die at once), then the target, verified; then the audit record."""
        before = self._store.lookup(request_id)
        self._store.revoke(request_id)
        removed: list[str] = []
        if spec is not None and spec.provisioner != "none":
            outcome, verified = self._provisioning.revoke_and_verify(self._provisioning.build(spec), request_id)
            if not verified:
                raise RuntimeError(f"access of request {request_id} still present after revoke")
            removed = outcome.removed
        resource = spec.resource if spec else before.resource if before else ""
        action = spec.action if spec else before.action if before else ""
        self._audit.append(
            [
                AuditEvent(
                    event_id=f"{request_id}:orphan-revoked",
                    request_id=request_id,
                    seq=ORPHAN_SEQ,
                    type=AuditEventType.ORPHAN_REVOKED,
                    at=datetime.now(UTC),
                    actor="reconciler",
                    reason=REASON,
                    requester=before.requester if before else (spec.requester if spec else ""),
                    resource=resource,
                    action=action,
                    details={"removed": removed},
                )
            ]
        )
        self._metrics.orphans_revoked.inc()
        # The alert: an operator must learn that something ended a request behind jit-access's back.
        log.error("orphaned access revoked", extra={"request_id": request_id, "removed": removed})
        return removed


def _spec(request_id: str, resource: str, action: str, settings: dict, requester: str = "unknown") -> GrantSpec:  # type: ignore[type-arg]
    now = datetime.now(UTC)
    return GrantSpec(
        request_id=request_id,
        requester=requester or "unknown",
        resource=resource,
        action=action,
        activated_at=now,
        expires_at=now,
        settings=settings,
    )


async def _keep_beating() -> None:
    while True:
        activity.heartbeat()
        await asyncio.sleep(HEARTBEAT_EVERY_S)
