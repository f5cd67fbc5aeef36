"""The web page's pages: my requests, to approve, new request, a request, reviews.

Each reads and acts through the same :class:`RequestService` methods as the
REST routes (api/routes/requests.py), with the same bodies validated by the
same models (api/schemas.py): a policy decides the same whichever way a person
comes in, and a request the person may not see is "no such request" here too.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from api import errors
from api.schemas import (
    AcknowledgeBody,
    ApproveBody,
    CancelBody,
    CreateRequest,
    DenyBody,
    ExtendBody,
    Preview,
    RequestSummary,
    RevokeBody,
)
from api.ui import csrf
from api.ui.render import UiRoute, current, done, page
from api.ui.timeline import timeline
from core.models import AccessRequestView, Actor, Status
from core.settings import Settings
from core.temporal import workflow_id

_PAGE = 50
_TO_APPROVE_PAGE = 25  # each one is read in full: the reason, the ticket, the policy's reasons
_HISTORY = 5  # the requester's last requests on the resource, beside each one to approve


def _service(request: Request) -> Any:
    return request.app.state.requests


def _optional(value: str | None) -> str | None:
    return value.strip() or None if value is not None else None


def _temporal_link(settings: Settings, request_id: str) -> str:
    # Temporal UI's origin is the one the codec endpoint lets in (README "Temporal UI").
    return f"{settings.codec_cors_origin}/namespaces/{settings.temporal_namespace}/workflows/{workflow_id(request_id)}"


def _preview_words(preview: Preview) -> str:
    if not preview.allowed:
        return "Refused: " + ("; ".join(preview.reasons) or "no policy permits it")
    because = f" ({'; '.join(preview.reasons)})" if preview.reasons else ""
    if preview.auto_approve or preview.break_glass or not preview.stages:
        return "Granted at once" + because
    stages = ", then ".join(
        f"{s.approvals} approval{'s' if s.approvals != 1 else ''} from {' or '.join(s.groups)}" for s in preview.stages
    )
    return f"Needs {stages}" + because


def build_router(settings: Settings) -> APIRouter:
    router = APIRouter(prefix="/ui", route_class=UiRoute)

    @router.get("")
    async def home(request: Request) -> Response:
        current(request)
        return RedirectResponse("/ui/requests", status_code=303)

    @router.get("/requests")
    async def my_requests(request: Request) -> Response:
        actor = current(request)
        found = await _service(request).list(
            actor,
            status=None,
            requester=None,
            resource=None,
            mine=True,
            to_approve=False,
            page_size=_PAGE,
            page_token=None,
        )
        return page(request, "my_requests.html", items=found.items, Status=Status)

    @router.get("/approve")
    async def to_approve(request: Request) -> Response:
        actor = current(request)
        service = _service(request)
        found = await service.list(
            actor,
            status=None,
            requester=None,
            resource=None,
            mine=False,
            to_approve=True,
            page_size=_TO_APPROVE_PAGE,
            page_token=None,
        )
        views = await asyncio.gather(*(_for_approval(service, actor, item) for item in found.items))
        return page(request, "to_approve.html", entries=[v for v in views if v is not None])

    @router.get("/reviews")
    async def reviews(request: Request) -> Response:
        actor = current(request)
        found = await _service(request).reviews(actor, page_size=_PAGE, page_token=None)
        return page(request, "reviews.html", items=found.items)

    @router.get("/new")
    async def new_form(request: Request) -> Response:
        return _new_page(request, current(request), {}, None)

    @router.post("/new")
    async def new_post(request: Request) -> Response:
        actor = current(request)
        form = await csrf.checked_form(request)
        body = CreateRequest(
            resource=form.get("resource", ""),
            action=form.get("action", ""),
            duration=form.get("duration", ""),
            reason=form.get("reason", ""),
            ticket=_optional(form.get("ticket")),
        )
        service = _service(request)
        if form.get("intent") == "preview":
            return _new_page(request, actor, form, _preview_words(service.preview(actor, body)))
        view, _ = await service.create(actor, body, form.get("idempotency_key") or None)
        return done(request, f"Request filed: {view.status}.", f"/ui/requests/{view.id}")

    def _new_page(request: Request, actor: Actor, form: dict[str, str], preview: str | None) -> Response:
        policies = request.app.state.policies
        catalog = policies.engine().catalog_for(actor, policies.clock(), mfa=actor.mfa)
        return page(
            request,
            "new.html",
            catalog=catalog,
            form=form,
            preview=preview,
            idempotency_key=form.get("idempotency_key") or str(uuid.uuid4()),
        )

    @router.get("/requests/{request_id}")
    async def detail(request: Request, request_id: str) -> Response:
        actor = current(request)
        view: AccessRequestView = await _service(request).get(actor, request_id)
        return page(
            request,
            "detail.html",
            view=view,
            events=timeline(view),
            temporal_link=_temporal_link(settings, view.id),
            mine=view.requester == actor.sub,
            Status=Status,
        )

    @router.post("/requests/{request_id}/credentials")
    async def credentials(request: Request, request_id: str) -> Response:
        actor = current(request)
        await csrf.checked_form(request)
        found = await request.app.state.credentials.issue(actor, request_id)
        return page(request, "credentials.html", request_id=request_id, credentials=found)

    @router.post("/requests/{request_id}/{operation}")
    async def act(request: Request, request_id: str, operation: str) -> Response:
        actor = current(request)
        form = await csrf.checked_form(request)
        service = _service(request)
        comment = _optional(form.get("comment"))
        if operation == "approve":
            await service.approve(actor, request_id, ApproveBody(comment=comment).comment)
            said = "Approved."
        elif operation == "deny":
            await service.deny(actor, request_id, DenyBody(reason=form.get("reason", "")).reason)
            said = "Denied."
        elif operation == "cancel":
            await service.cancel(actor, request_id, CancelBody(reason=_optional(form.get("reason"))).reason)
            said = "Cancelled."
        elif operation == "revoke":
            await service.revoke(actor, request_id, RevokeBody(reason=form.get("reason", "")).reason)
            said = "Revoked."
        elif operation == "extend":
            body = ExtendBody(duration=form.get("duration", ""), reason=form.get("reason", ""))
            await service.extend(actor, request_id, body.duration, body.reason)
            said = "Extension asked."
        elif operation == "acknowledge":
            await service.acknowledge(actor, request_id, AcknowledgeBody(comment=comment).comment)
            said = "Review acknowledged."
        else:
            raise errors.NotFound(f"no such action: {operation[:40]}")
        back = form.get("back", "")
        return done(request, said, back if back in ("/ui/approve", "/ui/reviews") else f"/ui/requests/{request_id}")

    return router


async def _for_approval(service: Any, actor: Actor, item: RequestSummary) -> dict[str, Any] | None:
    """One request to decide, in full, with the requester's recent requests on the resource."""
    try:
        view = await service.get(actor, item.id)
    except errors.ApiError:
        return None  # ended or gone since it was listed
    history = await service.list(
        actor,
        status=None,
        requester=view.requester,
        resource=view.resource,
        mine=False,
        to_approve=False,
        page_size=_HISTORY + 1,
        page_token=None,
    )
    earlier = [h for h in history.items if h.id != view.id][:_HISTORY]
    return {"view": view, "history": earlier, "extension": item.extension_pending}
