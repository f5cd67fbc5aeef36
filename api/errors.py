"""Errors, mapped to HTTP once: ``{"error": {"code", "message", "field"?}}``.

Routes raise :class:`ApiError` subclasses; Temporal failures and validation
errors are translated here, and nothing else leaks a stack trace or a 500
with internals.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route
from temporalio.client import RPCTimeoutOrCancelledError, WorkflowQueryFailedError, WorkflowUpdateFailedError
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


class TooLarge(ApiError):
    status, code = 413, "too_large"


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
    message = cause.message
    if field and not message.startswith(field):
        message = f"{field}: {message}"  # the message names the field, like every other 422
    return _BY_WORKFLOW_ERROR[cause.type](message, field=field)


def from_rpc_error(e: RPCError) -> ApiError:
    if e.status == RPCStatusCode.NOT_FOUND and not _namespace_missing(e):
        return NotFound("no such request")
    if e.status == RPCStatusCode.NOT_FOUND:
        # Not the request: the namespace, unknown to Temporal or not loaded yet after a restart.
        log.warning("Temporal: %s", e.message)
        return Unavailable(
            f"Temporal cannot serve jit-access now ({e.message}); try again shortly", headers={"Retry-After": "5"}
        )
    if e.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED):
        return Unavailable("Temporal is unreachable; try again shortly", headers={"Retry-After": "5"})
    log.error("Temporal call failed: %s %s", e.status, e.message)
    return Unavailable("Temporal refused the call; try again shortly", headers={"Retry-After": "5"})


def _namespace_missing(e: RPCError) -> bool:
    return any(d.type_url.endswith(".NamespaceNotFoundFailure") for d in e.grpc_status.details)


def while_starting(e: BaseException | None) -> ApiError:
    """A Temporal error on the create path. "Not found" there cannot mean "no such request"
    (the caller is filing it): Temporal is still coming back (a namespace or shard not
    loaded yet after a restart), so the caller is told to retry with the same key."""
    if isinstance(e, RPCError) and e.status != RPCStatusCode.NOT_FOUND:
        return from_rpc_error(e)
    said = getattr(e, "message", "") or "not found"
    log.warning("Temporal answered not found while a request was being filed: %s", said)
    return Unavailable(
        f"Temporal could not file the request ({said}); try again with the same Idempotency-Key",
        headers={"Retry-After": "1"},
    )


def query_failed() -> ApiError:
    """A workflow that cannot answer its query (its task fails on the worker, or no worker
    runs it): the request exists but cannot be read now. Never a 500; operators see it in
    Temporal UI (a failing workflow task) and the worker's log."""
    log.warning("a request's workflow did not answer its query")
    return Unavailable(
        "the request's workflow did not answer (its worker is failing on it or not running); try again shortly",
        headers={"Retry-After": "5"},
    )


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
}
# Starlette's own wording for these is fine except for body parsing failures.
_HTTP_MESSAGES = {400: "request body could not be read: send UTF-8 JSON"}


def _body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if field:
        error["field"] = field
    return {"error": error}


def _field_of(loc: tuple[Any, ...]) -> str | None:
    parts = [str(p) for p in loc[1:]] if loc and loc[0] in _LOCATIONS else [str(p) for p in loc]
    return ".".join(parts) or None


_LOCATIONS = ("body", "query", "path", "header", "cookie")

# Query filters go into a visibility query (api/listing.py): say what they may hold.
_PATTERN_RULES = {r"^[A-Za-z0-9_.:/@+-]{1,200}$": "may hold only letters, digits and _.:/@+- (at most 200)"}

# pydantic's wording, rewritten as "<field>: <rule>" reads: "reason: must not be empty".
_RULES: dict[str, Callable[[dict[str, Any]], str]] = {
    "missing": lambda _: "is required",
    "extra_forbidden": lambda _: "is not a field of this request",
    "string_type": lambda _: "must be a string",
    "string_too_short": lambda c: (
        "must not be empty" if c.get("min_length") == 1 else f"must be at least {c.get('min_length')} characters"
    ),
    "string_too_long": lambda c: f"must be at most {c.get('max_length')} characters",
    "string_pattern_mismatch": lambda c: _PATTERN_RULES.get(c.get("pattern"), "has characters that are not allowed"),
    "int_type": lambda _: "must be a whole number",
    "int_parsing": lambda _: "must be a whole number",
    "int_from_float": lambda _: "must be a whole number",
    "bool_type": lambda _: "must be true or false",
    "bool_parsing": lambda _: "must be true or false",
    "greater_than": lambda c: f"must be greater than {c.get('gt')}",
    "greater_than_equal": lambda c: f"must be at least {c.get('ge')}",
    "less_than": lambda c: f"must be less than {c.get('lt')}",
    "less_than_equal": lambda c: f"must be at most {c.get('le')}",
    "enum": lambda c: f"must be one of {c.get('expected')}",
    "literal_error": lambda c: f"must be one of {c.get('expected')}",
    "model_type": lambda _: "must be an object",
    "model_attributes_type": lambda _: "must be an object",
    "dict_type": lambda _: "must be an object",
    "list_type": lambda _: "must be a list",
}
_DATETIME = "must be an ISO 8601 date-time with a time zone, e.g. 2026-01-01T09:00:00Z"


def _rule_of(error: dict[str, Any]) -> str:
    kind = str(error.get("type", ""))
    if kind in _RULES:
        return _RULES[kind](error.get("ctx") or {})
    if kind.startswith(("datetime_", "date_", "timezone_")):
        return _DATETIME
    if kind in ("value_error", "assertion_error"):
        cause = (error.get("ctx") or {}).get("error")
        if cause is not None:
            return str(cause)
    message = str(error.get("msg") or "is not valid").removeprefix("Value error, ")
    return message[:1].lower() + message[1:]


def validation_error(errors: Sequence[Any]) -> ApiError:
    """Map pydantic errors to one ``ApiError``: the first problem, naming its field and rule."""
    first = dict(errors[0]) if errors else {}
    loc = tuple(first.get("loc", ()))
    if first.get("type") == "json_invalid":
        # The decoder's reason ("Expecting ',' delimiter") and where, never the body itself.
        reason = str((first.get("ctx") or {}).get("error", "")).split(":")[0][:100]
        where = f" at character {loc[1]}" if len(loc) > 1 and isinstance(loc[1], int) else ""
        return BadRequest(
            f"request body is not valid JSON: {reason}{where}" if reason else "request body is not valid JSON"
        )
    if loc == ("body",):
        # The body as a whole is missing or not an object: nothing to name.
        return BadRequest("request body must be a JSON object (Content-Type: application/json)")
    field = _field_of(loc)
    rule = _rule_of(first)
    return Invalid(f"{field}: {rule}" if field else rule, field=field)


def response(e: ApiError) -> JSONResponse:
    """The answer to ``e``: also for the ASGI middlewares that answer before any route runs."""
    return JSONResponse(_body(e.code, e.message, e.field), status_code=e.status, headers=e.headers)


def _methods_of(request: Request) -> list[str]:
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, Route) and route.methods and route.path_regex.match(request.url.path):
            methods |= route.methods
    return sorted(methods)


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, e: ApiError) -> JSONResponse:
        return response(e)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, e: RequestValidationError) -> JSONResponse:
        return await _api_error(request, validation_error(e.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, e: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(e.status_code, "http_error")
        message = _HTTP_MESSAGES.get(e.status_code, str(e.detail))
        headers = e.headers
        if e.status_code == 405:
            # Starlette names the methods of the first route on the path only; one path here
            # often has a route per method (GET and POST /v1/requests).
            headers = {**(headers or {}), "Allow": ", ".join(_methods_of(request))}
        return JSONResponse(_body(code, message), status_code=e.status_code, headers=headers)

    @app.exception_handler(RPCError)
    async def _rpc(request: Request, e: RPCError) -> JSONResponse:
        return await _api_error(request, from_rpc_error(e))

    @app.exception_handler(WorkflowQueryFailedError)
    async def _query_failed(request: Request, _: WorkflowQueryFailedError) -> JSONResponse:
        return await _api_error(request, query_failed())

    @app.exception_handler(RPCTimeoutOrCancelledError)
    async def _rpc_timeout(request: Request, e: RPCTimeoutOrCancelledError) -> JSONResponse:
        log.warning("Temporal call timed out: %s", e)
        return await _api_error(
            request, Unavailable("Temporal did not answer in time; try again shortly", headers={"Retry-After": "5"})
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, e: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return JSONResponse(_body("internal", "internal error"), status_code=500)
