"""``/v1/requests``: file, read, list and act on access requests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response, status

from activities.provisioners.base import ProvisionerConfigError
from activities.provisioners.postgres_config import credentials_for, load_password_secret
from api import errors
from api.deps import CatalogDep, CurrentUser, Grants, Keys, Requests, SettingsDep
from api.schemas import (
    ApproveBody,
    CancelBody,
    CatalogItem,
    CreateRequest,
    Credentials,
    DatabaseCredentials,
    DenyBody,
    ExtendBody,
    RequestPage,
    RevokeBody,
)
from core import access_tokens
from core.catalog import CatalogEntry
from core.models import AccessRequestView, Status
from core.settings import Settings

router = APIRouter(prefix="/v1", tags=["requests"])


@router.post("/requests", status_code=status.HTTP_201_CREATED)
async def create_request(
    body: CreateRequest,
    user: CurrentUser,
    requests: Requests,
    response: Response,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> AccessRequestView:
    view, created = await requests.create(user, body, idempotency_key)
    if not created:
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = f"/v1/requests/{view.id}"
    return view


@router.get("/requests")
async def list_requests(
    user: CurrentUser,
    requests: Requests,
    status: Status | None = None,
    requester: str | None = None,
    resource: str | None = None,
    mine: bool = False,
    to_approve: bool = False,
    page_size: Annotated[int, Query(ge=1, le=200)] = 50,
    page_token: Annotated[str | None, Query(max_length=4096)] = None,
) -> RequestPage:
    return await requests.list(
        user,
        status=status,
        requester=requester,
        resource=resource,
        mine=mine,
        to_approve=to_approve,
        page_size=page_size,
        page_token=page_token,
    )


@router.get("/requests/{request_id}")
async def get_request(request_id: str, user: CurrentUser, requests: Requests) -> AccessRequestView:
    return await requests.get(user, request_id)


@router.post("/requests/{request_id}/approve")
async def approve(request_id: str, user: CurrentUser, requests: Requests, body: ApproveBody | None = None) -> AccessRequestView:
    return await requests.approve(user, request_id, body.comment if body else None)


@router.post("/requests/{request_id}/deny")
async def deny(request_id: str, body: DenyBody, user: CurrentUser, requests: Requests) -> AccessRequestView:
    return await requests.deny(user, request_id, body.reason)


@router.post("/requests/{request_id}/cancel")
async def cancel(request_id: str, user: CurrentUser, requests: Requests, body: CancelBody | None = None) -> AccessRequestView:
    return await requests.cancel(user, request_id, body.reason if body else None)


@router.post("/requests/{request_id}/revoke")
async def revoke(request_id: str, body: RevokeBody, user: CurrentUser, requests: Requests) -> AccessRequestView:
    return await requests.revoke(user, request_id, body.reason)


@router.post("/requests/{request_id}/extend")
async def extend(request_id: str, body: ExtendBody, user: CurrentUser, requests: Requests) -> AccessRequestView:
    return await requests.extend(user, request_id, body.duration, body.reason)


@router.get("/requests/{request_id}/credentials")
async def credentials(
    request_id: str,
    user: CurrentUser,
    requests: Requests,
    grants: Grants,
    keys: Keys,
    settings: SettingsDep,
    catalog: CatalogDep,
) -> Credentials:
    view = await requests.get(user, request_id)
    if view.requester != user.sub:
        raise errors.Forbidden("only the requester may fetch the credentials")
    grant = grants.lookup(view.id)
    if view.status is not Status.ACTIVE or grant is None or not grant.is_live(datetime.now(UTC)):
        raise errors.Conflict(f"request is {view.status}, not active")
    token, expires_at = access_tokens.mint(keys, grant, issuer=settings.token_issuer, ttl_s=settings.token_ttl_s)
    return Credentials(
        access_token=token,
        expires_at=expires_at,
        grant_expires_at=grant.expires_at,
        resource=grant.resource,
        action=grant.action,
        database=_database_credentials(view.id, view.requester, catalog.get(view.resource), settings),
    )


def _database_credentials(
    request_id: str, requester: str, entry: CatalogEntry | None, settings: Settings
) -> DatabaseCredentials | None:
    """Recomputed on each call: the password is derived, never stored or put in history."""
    if entry is None or entry.provisioner.get("type") != "postgres":
        return None
    secret = load_password_secret(settings.data_dir, settings.pg_password_secret)
    try:
        found = credentials_for(request_id, entry.provisioner, requester=requester, secret=secret)
    except ProvisionerConfigError as e:
        raise errors.Unavailable("the database for this resource is not configured on this server") from e
    return DatabaseCredentials(**found)


@router.get("/catalog", tags=["catalog"])
async def catalog(user: CurrentUser, catalog: CatalogDep) -> list[CatalogItem]:
    return [
        CatalogItem(
            resource=e.id,
            description=e.description,
            actions=e.actions,
            max_duration_s=e.max_duration,
            approvals_required=e.approvals_required,
            approver_groups=e.approver_groups,
        )
        for e in catalog.entries()
    ]
