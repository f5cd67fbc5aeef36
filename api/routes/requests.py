"""``/v1/requests``: file, read, list and act on access requests."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Response, status

from api import listing
from api.deps import CredentialsDep, CurrentUser, Requests
from api.openapi_errors import SIGNED_IN, documented
from api.schemas import (
    AcknowledgeBody,
    ApproveBody,
    CancelBody,
    CreateRequest,
    Credentials,
    DenyBody,
    ExtendBody,
    Preview,
    RequestPage,
    RevokeBody,
)
from core.models import AccessRequestView, Status

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
async def credentials(request_id: RequestId, user: CurrentUser, credentials: CredentialsDep) -> Credentials:
    return await credentials.issue(user, request_id)
