"""A JSON body that names a key twice is refused with 400, naming the key.

JSON parsers disagree on duplicates (Python keeps the last, others the first or
refuse), so a body like ``{"reason": "routine", "reason": "..."}`` could mean one
thing to a proxy or an audit tool and another to the API. A pure ASGI
middleware, inside the body limit (api/body_limit.py), so the body it reads is
bounded; bodies that are not JSON, or not valid JSON, pass on untouched for the
routes to judge as before.
"""

from __future__ import annotations

import email.message
import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import errors

_WITH_BODY = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class _Duplicate(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _Duplicate(key)
        seen[key] = value
    return seen


def duplicate_key(body: bytes) -> str | None:
    """The first key some object of ``body`` names twice; None if none does or it is not JSON."""
    try:
        json.loads(body, object_pairs_hook=_unique)
    except _Duplicate as d:
        return d.key
    except (ValueError, RecursionError):
        pass  # not JSON (or too deep): the route's own parsing answers it
    return None


def _is_json(scope: Scope) -> bool:
    # FastAPI reads a body without a Content-Type as JSON too.
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            message = email.message.Message()
            message["content-type"] = value.decode("latin-1")
            subtype = message.get_content_subtype()
            return message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))
    return True


class DuplicateKeysMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _WITH_BODY or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left, or the body limit answered 413 already
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        key = duplicate_key(body) if body else None
        if key is not None:
            shown = json.dumps(key)[:80]
            refusal = errors.BadRequest(
                f"request body has the key {shown} more than once: send each key once", field=key[:80]
            )
            await errors.response(refusal)(scope, receive, send)
            return

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
