"""Provision, extend and deprovision access in the target system named by the catalog.

Synchronous activities (the worker's thread pool): psycopg and httpx block.
Each builds the provisioner the request's ``GrantSpec.settings`` names
(``type: postgres | webhook | none``, absent means none) and heartbeats while
it works, so a heartbeat timeout notices a stuck attempt.

Failure policy, because access must end even when granting may give up:

- ``provision`` and ``extend_provision``: a :class:`ProvisionerError` (bad
  settings, missing table, revoked first, grant gone) is non-retryable;
  anything else is retried.
- ``deprovision`` never gives up: every error is retryable, and a revoke
  whose ``verify_revoked`` does not hold raises so Temporal tries again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from pydantic import AwareDatetime, BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.provisioners.base import (
    GrantOutcome,
    GrantSpec,
    Heartbeat,
    NoneProvisioner,
    Provisioner,
    RevokeOutcome,
    no_heartbeat,
)
from activities.provisioners.postgres import PostgresProvisioner
from activities.provisioners.webhook import WebhookProvisioner
from core import provisioners
from core.metrics import WorkerMetrics
from core.provisioners.errors import ProvisionerConfigError, ProvisionerError, RevokedBeforeGrantError


class ExtendProvisionInput(BaseModel):
    spec: GrantSpec
    expires_at: AwareDatetime


class DeprovisionInput(BaseModel):
    spec: GrantSpec
    reason: str


# Builds the provisioner for one request; extra kinds can be registered.
Factory = Callable[[GrantSpec, Heartbeat], Provisioner]


class ProvisioningActivities:
    def __init__(
        self,
        *,
        password_secret: bytes,
        environ: Mapping[str, str] | None = None,
        is_revoked: Callable[[str], bool] | None = None,
        extra: Mapping[str, Factory] | None = None,
        metrics: WorkerMetrics | None = None,
    ):
        """``password_secret``: see ``postgres_config.load_password_secret``.
        ``is_revoked(request_id)``: the grant store's tombstone, so a late
        grant retry never re-creates access a rollback already removed."""
        self._factories: dict[str, Factory] = {
            provisioners.NONE: lambda spec, beat: NoneProvisioner(),
            provisioners.POSTGRES: lambda spec, beat: PostgresProvisioner(
                spec.settings, secret=password_secret, environ=environ, is_revoked=is_revoked, heartbeat=beat
            ),
            provisioners.WEBHOOK: lambda spec, beat: WebhookProvisioner(
                spec.settings, context=spec, environ=environ, heartbeat=beat
            ),
            **(extra or {}),
        }
        # A type the catalog accepts but this worker cannot build fails here, at start, not at a grant.
        missing = set(provisioners.SETTINGS) - set(self._factories)
        if missing:
            raise ProvisionerConfigError(f"no provisioner for type(s) {', '.join(sorted(missing))}")
        self._is_revoked = is_revoked
        self._metrics = metrics or WorkerMetrics()

    def _failed(self, spec: GrantSpec) -> None:
        self._metrics.provisioner_failures.labels(spec.provisioner).inc()

    def _build(self, spec: GrantSpec, heartbeat: Heartbeat | None = None) -> Provisioner:
        factory = self._factories.get(spec.provisioner)
        if factory is None:
            raise ProvisionerConfigError(f"unknown provisioner type {spec.provisioner!r}")
        return factory(spec, heartbeat or activity.heartbeat)

    def build(self, spec: GrantSpec) -> Provisioner:
        """A provisioner outside an activity's heartbeat (the reconciler's own loop heartbeats)."""
        return self._build(spec, no_heartbeat)

    def revoke_and_verify(
        self, provisioner: Provisioner, request_id: str, heartbeat: Heartbeat = no_heartbeat
    ) -> tuple[RevokeOutcome, bool]:
        """Take the access away, then look again independently: every revocation is done and checked so."""
        outcome = provisioner.revoke(request_id)
        heartbeat("verifying")
        return outcome, provisioner.verify_revoked(request_id)

    @activity.defn
    def provision(self, spec: GrantSpec) -> GrantOutcome:
        try:
            provisioner = self._build(spec)
            if (
                self._is_revoked is not None
                and spec.provisioner != provisioners.POSTGRES
                and self._is_revoked(spec.request_id)
            ):
                # (postgres checks under its own lock, closing the race as well)
                raise RevokedBeforeGrantError(f"request {spec.request_id} was revoked before it was provisioned")
            outcome = provisioner.grant(spec)
        except ProvisionerError as e:
            self._failed(spec)
            raise ApplicationError(str(e), type=type(e).__name__, non_retryable=True) from e
        except Exception:
            self._failed(spec)
            raise
        activity.logger.info("provisioned", extra={"request_id": spec.request_id, "provisioner": outcome.provisioner})
        return outcome

    @activity.defn
    def extend_provision(self, input: ExtendProvisionInput) -> None:
        try:
            self._build(input.spec).extend(input.spec.request_id, input.expires_at)
        except ProvisionerError as e:
            self._failed(input.spec)
            raise ApplicationError(str(e), type=type(e).__name__, non_retryable=True) from e
        except Exception:
            self._failed(input.spec)
            raise

    @activity.defn
    def deprovision(self, input: DeprovisionInput) -> RevokeOutcome:
        request_id = input.spec.request_id
        try:
            outcome, verified = self.revoke_and_verify(self._build(input.spec), request_id, activity.heartbeat)
        except (ProvisionerError, ApplicationError) as e:
            self._failed(input.spec)
            if isinstance(e, ApplicationError) and not e.non_retryable:
                raise  # keeps its own retry hint (Retry-After)
            # Even a "permanent" failure is retried: fixing the settings or the
            # receiver and restarting the worker must still end the access.
            activity.logger.error("deprovision failed, will retry: %s", e, extra={"request_id": request_id})
            message = e.message if isinstance(e, ApplicationError) else str(e)
            raise ApplicationError(message, type=_type_of(e)) from e
        except Exception:
            self._failed(input.spec)
            raise
        if not verified:
            self._failed(input.spec)
            raise ApplicationError(
                f"access of request {request_id} still present after revoke", type="RevokeNotVerified"
            )
        activity.logger.info("deprovisioned", extra={"request_id": request_id, "reason": input.reason})
        return outcome


def _type_of(e: Exception) -> str:
    if isinstance(e, ApplicationError) and e.type:
        return e.type
    return type(e).__name__
