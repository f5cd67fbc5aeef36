"""``/v1/requests``: file, read, list and act on access requests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Response, status

from api import errors, listing
from api.deps import CurrentUser, Engine, Grants, Keys, Requests, SettingsDep
from api.openapi_errors import SIGNED_IN, documented
from api.schemas import (
    AcknowledgeBody,
    ApproveBody,
    CancelBody,
    CreateRequest,
    Credentials,
    DatabaseCredentials,
    DenyBody,
    ExtendBody,
    Preview,
    RequestPage,
    RevokeBody,
)
from core import access_tokens
from core.catalog import CatalogEntry
from core.models import AccessRequestView, Status
from core.provisioners.errors import ProvisionerConfigError
from core.provisioners.postgres_config import credentials_for, load_password_secret
from core.settings import Settings

router = APIRouter(prefix="/v1", tags=["requests"])

# A unique prefix will do, as git takes commit prefixes (api/request_ids.py).
RequestId = Annotated[
    str, Path(description="a request id, or a unique prefix of one: at least 4 characters, hex digits and dashes")
]


@router.post(
    "/requests",
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": AccessRequestView, "description": "an Idempotency-Key already used for this body: that request"},
        **documented(*SIGNED_IN, 400, 403, 409, 422),
    },
)
async def create_request(
    body: CreateRequest,
    user: CurrentUser,
    requests: Requests,
    response: Response,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200)] = None,
) -> AccessRequestView:
    view, created = await requests.create(user, body, idempotency_key)
    if not created:
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = f"/v1/requests/{view.id}"
    return view


@router.post("/requests/preview", responses=documented(*SIGNED_IN, 400, 422))
async def preview_request(body: CreateRequest, user: CurrentUser, requests: Requests) -> Preview:
    """What ``POST /v1/requests`` would decide for this body, and why; nothing is started."""
    return requests.preview(user, body)


@router.get("/requests", responses=documented(*SIGNED_IN, 422))
async def list_requests(
    user: CurrentUser,
    requests: Requests,
    status: Status | None = None,
    requester: Annotated[str | None, Query(pattern=listing.VALUE_PATTERN)] = None,
    resource: Annotated[str | None, Query(pattern=listing.VALUE_PATTERN)] = None,
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


@router.get("/requests/{request_id}", responses=documented(*SIGNED_IN, 404, 409, 422))
async def get_request(request_id: RequestId, user: CurrentUser, requests: Requests) -> AccessRequestView:
    return await requests.get(user, request_id)


@router.post("/requests/{request_id}/approve", responses=documented(*SIGNED_IN, 400, 403, 404, 409, 422))
async def approve(
    request_id: RequestId, user: CurrentUser, requests: Requests, body: ApproveBody | None = None
) -> AccessRequestView:
    return await requests.approve(user, request_id, body.comment if body else None)


@router.post("/requests/{request_id}/deny", responses=documented(*SIGNED_IN, 400, 403, 404, 409, 422))
async def deny(request_id: RequestId, body: DenyBody, user: CurrentUser, requests: Requests) -> AccessRequestView:
    return await requests.deny(user, request_id, body.reason)


@router.post("/requests/{request_id}/cancel", responses=documented(*SIGNED_IN, 400, 403, 404, 409, 422))
async def cancel(
    request_id: RequestId, user: CurrentUser, requests: Requests, body: CancelBody | None = None
) -> AccessRequestView:
    return await requests.cancel(user, request_id, body.reason if body else None)


@router.post("/requests/{request_id}/revoke", responses=documented(*SIGNED_IN, 400, 403, 404, 409, 422))
async def revoke(request_id: RequestId, body: RevokeBody, user: CurrentUser, requests: Requests) -> AccessRequestView:
    return await requests.revoke(user, request_id, body.reason)


@router.post("/requests/{request_id}/extend", responses=documented(*SIGNED_IN, 400, 403, 404, 409, 422))
async def extend(request_id: RequestId, body: ExtendBody, user: CurrentUser, requests: Requests) -> AccessRequestView:
    return await requests.extend(user, request_id, body.duration, body.reason)


@router.post("/requests/{request_id}/acknowledge", responses=documented(*SIGNED_IN, 400, 403, 404, 409, 422))
async def acknowledge(
    request_id: RequestId, user: CurrentUser, requests: Requests, body: AcknowledgeBody | None = None
) -> AccessRequestView:
    """Close the review of a break-glass grant (its review groups, never the requester)."""
    return await requests.acknowledge(user, request_id, body.comment if body else None)


@router.get("/reviews", responses=documented(*SIGNED_IN, 422))
async def list_reviews(
    user: CurrentUser,
    requests: Requests,
    page_size: Annotated[int, Query(ge=1, le=200)] = 50,
    page_token: Annotated[str | None, Query(max_length=4096)] = None,
) -> RequestPage:
    """Break-glass grants still waiting for their review, newest first."""
    return await requests.reviews(user, page_size=page_size, page_token=page_token)


@router.get("/requests/{request_id}/credentials", responses=documented(*SIGNED_IN, 403, 404, 409, 422))
async def credentials(
    request_id: RequestId,
    user: CurrentUser,
    requests: Requests,
    grants: Grants,
    keys: Keys,
    settings: SettingsDep,
    engine: Engine,
) -> Credentials:
    grant = await requests.live_grant_of(user, request_id)
    if grant is None:
        # Not plainly the caller's live grant: the request's own view says why (or, in a race, that it is).
        view = await requests.get(user, request_id)
        if view.requester != user.sub:
            raise errors.Forbidden("only the requester may fetch the credentials")
        grant = grants.lookup(view.id)
        if view.orphaned:
            # Its workflow no longer runs, so nothing would end what we mint now.
            raise errors.Conflict("the request's workflow was ended outside jit-access; no credentials are issued")
        if view.status is not Status.ACTIVE or grant is None or not grant.is_live(datetime.now(UTC)):
            raise errors.Conflict(f"request is {view.status}, not active")
    token, expires_at = access_tokens.mint(keys, grant, issuer=settings.token_issuer, ttl_s=settings.token_ttl_s)
    return Credentials(
        access_token=token,
        expires_at=expires_at,
        grant_expires_at=grant.expires_at,
        resource=grant.resource,
        action=grant.action,
        database=_database_credentials(grant.request_id, grant.requester, engine.catalog.get(grant.resource), settings),
    )


def _database_credentials(
    request_id: RequestId, requester: str, entry: CatalogEntry | None, settings: Settings
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
