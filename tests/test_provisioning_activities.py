"""The provisioning activities: provisioner choice, heartbeats, and which failures Temporal may retry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.provisioners.base import GrantOutcome, GrantSpec, RevokeOutcome
from activities.provisioners.postgres import PostgresProvisioner
from activities.provisioning import DeprovisionInput, ExtendProvisionInput, ProvisioningActivities
from core.grants import SqliteGrantStore
from core.provisioners.postgres_config import derive_password, role_prefix
from tests.pg import PgDatabase, pg_cluster, pg_db  # noqa: F401

DSN_ENV = "JIT_TEST_ADMIN_DSN"
SECRET = b"activity-test-secret"


def spec(request_id: str, settings: dict[str, Any]) -> GrantSpec:
    now = datetime.now(UTC)
    return GrantSpec(
        request_id=request_id,
        requester="alice",
        resource="postgres:test/public.orders",
        action="read",
        activated_at=now,
        expires_at=now + timedelta(minutes=15),
        settings=settings,
    )


@pytest.fixture
def db(pg_db: PgDatabase) -> PgDatabase:  # noqa: F811
    pg_db.execute("CREATE TABLE orders (id int)")
    return pg_db


def pg_settings() -> dict[str, Any]:
    return {"type": "postgres", "dsn_env": DSN_ENV, "tables": ["public.orders"]}


def roles(db: PgDatabase, request_id: str) -> int:
    return db.execute("SELECT count(*) FROM pg_roles WHERE starts_with(rolname, %s)", (role_prefix(request_id),))[0][0]


def run(activity: Any, arg: Any, beats: list[Any] | None = None) -> Any:
    env = ActivityEnvironment()
    if beats is not None:
        env.on_heartbeat = lambda *details: beats.extend(details)
    return env.run(activity, arg)


def test_postgres_lifecycle_through_the_activities(db: PgDatabase) -> None:
    acts = ProvisioningActivities(password_secret=SECRET, environ={DSN_ENV: db.dsn})
    rid = db.request_id()
    s = spec(rid, pg_settings())
    beats: list[Any] = []

    outcome = run(acts.provision, s, beats)
    assert isinstance(outcome, GrantOutcome) and outcome.created and roles(db, rid) == 1
    assert "role ready" in beats
    assert derive_password(SECRET, rid) not in outcome.model_dump_json() + repr(beats)

    later = s.expires_at + timedelta(minutes=10)
    run(acts.extend_provision, ExtendProvisionInput(spec=s, expires_at=later))
    assert db.execute("SELECT rolvaliduntil FROM pg_roles WHERE starts_with(rolname, %s)", (role_prefix(rid),)) == [
        (later,)
    ]

    revoked = run(acts.deprovision, DeprovisionInput(spec=s, reason="expired"), beats)
    assert isinstance(revoked, RevokeOutcome) and revoked.removed == [outcome.principal]
    assert roles(db, rid) == 0 and "verifying" in beats


def test_failures_are_final_for_grants_but_never_for_revokes(db: PgDatabase) -> None:
    acts = ProvisioningActivities(password_secret=SECRET, environ={})  # no DSN in the environment
    s = spec(db.request_id(), pg_settings())
    with pytest.raises(ApplicationError) as grant_failed:
        run(acts.provision, s)
    assert grant_failed.value.non_retryable and grant_failed.value.type == "ProvisionerConfigError"
    with pytest.raises(ApplicationError) as revoke_failed:
        run(acts.deprovision, DeprovisionInput(spec=s, reason="rollback"))
    assert not revoke_failed.value.non_retryable and DSN_ENV in revoke_failed.value.message

    unknown = spec(db.request_id(), {"type": "kerberos"})
    with pytest.raises(ApplicationError, match="kerberos") as unknown_failed:
        run(acts.provision, unknown)
    assert unknown_failed.value.non_retryable


def test_extend_of_a_revoked_grant_is_final(db: PgDatabase) -> None:
    acts = ProvisioningActivities(password_secret=SECRET, environ={DSN_ENV: db.dsn})
    s = spec(db.request_id(), pg_settings())
    run(acts.provision, s)
    run(acts.deprovision, DeprovisionInput(spec=s, reason="revoked"))
    with pytest.raises(ApplicationError) as failed:
        run(acts.extend_provision, ExtendProvisionInput(spec=s, expires_at=s.expires_at + timedelta(minutes=5)))
    assert failed.value.non_retryable and failed.value.type == "GrantGoneError"


def test_the_grant_store_tombstone_stops_a_late_grant(db: PgDatabase, tmp_path: Path) -> None:
    store = SqliteGrantStore(tmp_path / "grants.sqlite3")

    def is_revoked(request_id: str) -> bool:
        row = store.lookup(request_id)
        return row is not None and row.revoked_at is not None

    acts = ProvisioningActivities(password_secret=SECRET, environ={DSN_ENV: db.dsn}, is_revoked=is_revoked)
    rid = db.request_id()
    store.revoke(rid)  # the rollback ran first
    with pytest.raises(ApplicationError) as failed:
        run(acts.provision, spec(rid, pg_settings()))
    assert failed.value.non_retryable and failed.value.type == "RevokedBeforeGrantError"
    assert roles(db, rid) == 0
    # And with no provisioner at all the same rule holds.
    with pytest.raises(ApplicationError, match="revoked"):
        run(acts.provision, spec(rid, {}))


def test_deprovision_retries_until_verify_holds(db: PgDatabase) -> None:
    env = {DSN_ENV: db.dsn}

    class LostRevoke(PostgresProvisioner):
        """A revoke that reports success but did nothing: the real verify must catch it."""

        def revoke(self, request_id: str) -> RevokeOutcome:
            return RevokeOutcome(request_id=request_id, provisioner=self.name)

    flaky = ProvisioningActivities(
        password_secret=SECRET,
        environ=env,
        extra={"postgres": lambda s, beat: LostRevoke(s.settings, secret=SECRET, environ=env, heartbeat=beat)},
    )
    s = spec(db.request_id(), pg_settings())
    run(flaky.provision, s)
    with pytest.raises(ApplicationError) as failed:
        run(flaky.deprovision, DeprovisionInput(spec=s, reason="expired"))
    assert failed.value.type == "RevokeNotVerified" and not failed.value.non_retryable

    # The next attempt (a working worker) ends it.
    run(ProvisioningActivities(password_secret=SECRET, environ=env).deprovision, DeprovisionInput(spec=s, reason="x"))
    assert roles(db, s.request_id) == 0


def test_none_provisioner_is_the_default() -> None:
    acts = ProvisioningActivities(password_secret=SECRET)
    s = spec("3f0c2a4e-3b7d-4c55-9a0e-2d8f1e7b9c31", {})
    assert run(acts.provision, s).provisioner == "none"
    assert run(acts.deprovision, DeprovisionInput(spec=s, reason="expired")).provisioner == "none"
