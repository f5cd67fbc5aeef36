"""Credentials for a live grant: a short-lived access token, and a database login when provisioned.

Both the REST route and the web page hand them out through :class:`CredentialsService`,
so the checks (the caller's own, active, workflow still running) are made in one place.
Nothing here is stored: the token is minted and the password derived on each call.
"""

from __future__ import annotations

from datetime import UTC, datetime

from api import errors
from api.policies import PolicyRuntime
from api.requests_service import RequestService
from api.schemas import Credentials, DatabaseCredentials
from core import access_tokens, provisioners
from core.grants import GrantRow, GrantStore
from core.keys import KeyRing
from core.models import Actor, Status
from core.provisioners.errors import ProvisionerConfigError
from core.provisioners.postgres_config import credentials_for, load_password_secret
from core.settings import Settings


class CredentialsService:
    def __init__(
        self, requests: RequestService, grants: GrantStore, keys: KeyRing, policies: PolicyRuntime, settings: Settings
    ):
        self._requests = requests
        self._grants = grants
        self._keys = keys
        self._policies = policies
        self._settings = settings

    async def issue(self, actor: Actor, request_id: str) -> Credentials:
        grant = await self._live_grant(actor, request_id)
        token, expires_at = access_tokens.mint(
            self._keys, grant, issuer=self._settings.token_issuer, ttl_s=self._settings.token_ttl_s
        )
        return Credentials(
            access_token=token,
            expires_at=expires_at,
            grant_expires_at=grant.expires_at,
            resource=grant.resource,
            action=grant.action,
            database=self._database(grant),
        )

    async def _live_grant(self, actor: Actor, request_id: str) -> GrantRow:
        grant = await self._requests.live_grant_of(actor, request_id)
        if grant is not None:
            return grant
        # Not plainly the caller's live grant: the request's own view says why (or, in a race, that it is).
        view = await self._requests.get(actor, request_id)
        if view.requester != actor.sub:
            raise errors.Forbidden("only the requester may fetch the credentials")
        grant = self._grants.lookup(view.id)
        if view.orphaned:
            # Its workflow no longer runs, so nothing would end what we mint now.
            raise errors.Conflict("the request's workflow was ended outside jit-access; no credentials are issued")
        if view.status is not Status.ACTIVE or grant is None or not grant.is_live(datetime.now(UTC)):
            raise errors.Conflict(f"request is {view.status}, not active")
        return grant

    def _database(self, grant: GrantRow) -> DatabaseCredentials | None:
        """The password is derived from the request id, never stored or put in history."""
        entry = self._policies.engine().catalog.get(grant.resource)
        if entry is None or provisioners.type_of(entry.provisioner) != provisioners.POSTGRES:
            return None
        secret = load_password_secret(self._settings.data_dir, self._settings.pg_password_secret)
        try:
            found = credentials_for(grant.request_id, entry.provisioner, requester=grant.requester, secret=secret)
        except ProvisionerConfigError as e:
            raise errors.Unavailable("the database for this resource is not configured on this server") from e
        return DatabaseCredentials(**found)
