"""The worker: runs AccessRequestWorkflow and the grant activities.

    python worker.py        (or: make run, which starts it for you)

Any number of workers can poll the same task queue; Temporal spreads the work.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

from temporalio.client import Client
from temporalio.worker import Worker

from activities.audit import AuditActivities
from activities.grants import GrantActivities
from activities.provisioners.postgres_config import load_password_secret
from activities.provisioning import ProvisioningActivities
from core.audit_log import AuditLog
from core.grants import GrantStore
from core.settings import Settings, get_settings
from core.temporal import connect
from workflows.access_request import AccessRequestWorkflow


def build_worker(client: Client, settings: Settings, executor: ThreadPoolExecutor) -> Worker:
    store = GrantStore(settings.grants_db_path)
    grants = GrantActivities(store)
    audit = AuditActivities(AuditLog(settings.audit_log_path))
    provisioning = ProvisioningActivities(
        password_secret=load_password_secret(settings.data_dir, settings.pg_password_secret),
        # The grant store's tombstone: a late grant retry never re-creates
        # access that a rollback already removed.
        is_revoked=lambda request_id: (row := store.lookup(request_id)) is not None and row.revoked_at is not None,
    )
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=[AccessRequestWorkflow],
        activities=[
            grants.issue_grant,
            grants.extend_grant,
            grants.revoke_grant,
            provisioning.provision,
            provisioning.extend_provision,
            provisioning.deprovision,
            audit.append_audit,
        ],
        activity_executor=executor,
        max_concurrent_activities=executor._max_workers,
    )


async def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(levelname)s %(message)s")
    settings = get_settings()
    client = await connect(settings)
    with ThreadPoolExecutor(max_workers=16) as executor:
        worker = build_worker(client, settings, executor)
        logging.info("polling task queue %s on %s", settings.task_queue, settings.temporal_address)
        await worker.run()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
