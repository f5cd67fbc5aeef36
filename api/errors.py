"""Errors, mapped to HTTP once: ``{"error": {"code", "message", "field"?}}``.

Routes raise :class:`ApiError` subclasses; Temporal failures and validation
errors are translated here, and nothing else leaks a stack trace or a 500
with internals.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from core import errors as wf_errors

log = logging.getLogger("jit.api")


class ApiError(Exception):
    status = 500
    code = "internal"

    def __init__(self, message: str, field: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.headers = headers


class BadRequest(ApiError):
    status, code = 400, "bad_request"


class Unauthorized(ApiError):
    status, code = 401, "unauthenticated"


class Forbidden(ApiError):
    status, code = 403, "forbidden"


class NotFound(ApiError):
    status, code = 404, "not_found"


class Conflict(ApiError):
    status, code = 409, "conflict"


class Invalid(ApiError):
    status, code = 422, "invalid"


class Unavailable(ApiError):
    status, code = 503, "unavailable"


_BY_WORKFLOW_ERROR = {wf_errors.FORBIDDEN: Forbidden, wf_errors.CONFLICT: Conflict, wf_errors.INVALID: Invalid}


def from_update_failure(e: WorkflowUpdateFailedError) -> ApiError:
    """A validator or handler refused: its ApplicationError type names the status."""
    cause: BaseException | None = e.cause
    while cause is not None and not (isinstance(cause, ApplicationError) and cause.type in _BY_WORKFLOW_ERROR):
        cause = cause.__cause__ or getattr(cause, "cause", None)
    if cause is None:
        log.warning("update failed without a mapped cause: %s", e.cause)
        return Conflict("the request could not be changed")
    assert isinstance(cause, ApplicationError)
    field = cause.details[0].get("field") if cause.details and isinstance(cause.details[0], dict) else None
    return _BY_WORKFLOW_ERROR[cause.type](cause.message, field=field)


def from_rpc_error(e: RPCError) -> ApiError:
    if e.status == RPCStatusCode.NOT_FOUND:
        return NotFound("no such request")
    if e.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED):
        return Unavailable("Temporal is unreachable; try again shortly", headers={"Retry-After": "5"})
    log.error("Temporal call failed: %s %s", e.status, e.message)
    return Unavailable("Temporal refused the call; try again shortly")


def _body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if field:
        error["field"] = field
    return {"error": error}


def _field_of(loc: tuple[Any, ...]) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or None


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, e: ApiError) -> JSONResponse:
        return JSONResponse(_body(e.code, e.message, e.field), status_code=e.status, headers=e.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0]
        if first.get("type") == "json_invalid":
            return JSONResponse(_body("bad_request", "request body is not valid JSON"), status_code=400)
        field = _field_of(tuple(first.get("loc", ())))
        message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
        return JSONResponse(
            _body("invalid", f"{field}: {message}" if field else message, field), status_code=422
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, e: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code, "http_error")
        return JSONResponse(_body(code, str(e.detail)), status_code=e.status_code, headers=e.headers)

    @app.exception_handler(RPCError)
    async def _rpc(_: Request, e: RPCError) -> JSONResponse:
        return await _api_error(_, from_rpc_error(e))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, e: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return JSONResponse(_body("internal", "internal error"), status_code=500)
