"""Rendering the web page: the templates, how statuses read, and errors as pages.

Every page route runs through :class:`UiRoute`: a refusal from the services
(api/requests_service.py, the same ones the REST routes call) becomes a page
with the same status and the same message the REST API answers, a caller not
signed in is sent to sign in, and anything unexpected is a plain "internal
error" page, never a stack trace. Jinja2 escapes every value (autoescape).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from temporalio.client import RPCTimeoutOrCancelledError, WorkflowQueryFailedError
from temporalio.service import RPCError

from api import errors
from api.ui import csrf
from api.ui.session import EXPIRED, signed_in
from core.catalog import LEGACY_STAGE
from core.durations import format_duration
from core.models import Actor, Status

log = logging.getLogger("jit.api.ui")

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")

# Status in words as well as colour (the colour is the CSS class: static/ui.css).
STATUS_WORDS = {
    Status.PENDING: ("Waiting for approval", "wait"),
    Status.SCHEDULED: ("Approved, starts later", "wait"),
    Status.PROVISIONING: ("Being granted", "wait"),
    Status.ACTIVE: ("Active", "ok"),
    Status.DENIED: ("Denied", "bad"),
    Status.CANCELLED: ("Cancelled", "off"),
    Status.TIMED_OUT: ("Timed out: nobody decided", "off"),
    Status.FAILED: ("Failed", "bad"),
    Status.EXPIRED: ("Expired", "off"),
    Status.REVOKED: ("Revoked", "off"),
}


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value else ""


def _iso(value: datetime | None) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else ""


def _status(value: Status | str | None) -> tuple[str, str]:
    if value is None:
        return ("Unknown", "off")
    return STATUS_WORDS.get(Status(value), (str(value), "off"))


def _left(value: datetime | None) -> str:
    """Time left until ``value``, as the page shows it before its script updates it each second."""
    if value is None:
        return ""
    seconds = int((value - datetime.now(UTC)).total_seconds())
    return format_duration(seconds) + " left" if seconds > 0 else "ending"


def _stage(name: str | None, groups: list[str]) -> str:
    """Who decides now: the stage's name only when the catalog names its stages."""
    who = " or ".join(groups)
    return f"approvers: {who}" if name in (None, LEGACY_STAGE) else f"stage {name}: {who}"


TEMPLATES.env.filters.update(when=_when, iso=_iso, status=_status, duration=format_duration, left=_left)
TEMPLATES.env.globals.update(stage=_stage)


class SignInRequired(Exception):
    """No session, or it has ended: the caller is sent to sign in, then back."""


def page(request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
    session = request.session
    values = {
        "user": signed_in(session),
        "csrf_token": csrf.token(session),
        "flash": session.pop("flash", None),
        **context,
    }
    return TEMPLATES.TemplateResponse(request, name, values, status_code=status_code)


def current(request: Request) -> Actor:
    actor = signed_in(request.session)
    if actor is None:
        raise SignInRequired
    return actor


def done(request: Request, message: str, to: str) -> Response:
    """After a form post that worked: say so on the next page (post/redirect/get)."""
    request.session["flash"] = message
    return RedirectResponse(to, status_code=303)


def _as_api_error(e: Exception) -> errors.ApiError | None:
    if isinstance(e, errors.ApiError):
        return e
    if isinstance(e, RequestValidationError | ValidationError):
        return errors.validation_error(e.errors())
    if isinstance(e, RPCError):
        return errors.from_rpc_error(e)
    if isinstance(e, WorkflowQueryFailedError):
        return errors.query_failed()
    if isinstance(e, RPCTimeoutOrCancelledError):
        return errors.Unavailable("Temporal did not answer in time; try again shortly")
    return None


class UiRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await handle(request)
            except SignInRequired:
                params = {"next": request.url.path} if request.method == "GET" else {}
                if request.session.get(EXPIRED):
                    params["expired"] = "1"
                return RedirectResponse("/ui/login" + (f"?{urlencode(params)}" if params else ""), status_code=303)
            except Exception as e:
                api_error = _as_api_error(e)
                if api_error is None:
                    log.exception("unhandled error on %s", request.url.path)
                    api_error = errors.ApiError("internal error")
                return page(request, "error.html", status_code=api_error.status, error=api_error)

        return handler
