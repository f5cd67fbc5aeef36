"""The error answers each operation documents in the OpenAPI document, all in the one error shape.

Routes list the statuses they can answer (``responses=documented(400, 404, ...)``);
every operation also gets 413 (api/body_limit.py refuses big bodies on every
path). FastAPI's own 422 schema (``HTTPValidationError``) never appears: our
422s are :class:`api.schemas.ErrorBody` like every other error.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from api.schemas import ErrorBody

_WHY = {
    400: "the body is not a JSON object, not valid JSON, or names a key twice",
    401: "no identity, or not a valid one (with `WWW-Authenticate: Bearer`)",
    403: "the policies or the request's rules do not let the caller do this",
    404: "no such request, or not one the caller may see",
    409: "the request is not in a state that allows this (or the Idempotency-Key was used for another body,"
    " or the id prefix starts more than one request)",
    413: "the body is larger than JIT_MAX_BODY_BYTES",
    422: "a field breaks a rule (`field` names it): the schema's, the catalog's or the policies'"
    " (an id prefix shorter than 4 characters too)",
    503: "Temporal, a worker or the identity provider cannot answer now; try again (`Retry-After`)",
}

SIGNED_IN = (401, 413, 503)  # every operation behind an identity


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorBody, "description": _WHY[status]} for status in sorted({*statuses, 413})}


def install(app: FastAPI) -> None:
    """Generate the document once, with FastAPI's own 422 schema replaced by ours wherever it added it."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
            ours = {"$ref": "#/components/schemas/ErrorBody"}
            for operations in schema.get("paths", {}).values():
                for operation in operations.values():
                    answer = operation.get("responses", {}).get("422")
                    if answer and "HTTPValidationError" in str(answer):
                        answer["description"] = _WHY[422]
                        answer["content"] = {"application/json": {"schema": ours}}
            components = schema.get("components", {}).get("schemas", {})
            components.pop("HTTPValidationError", None)
            components.pop("ValidationError", None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
