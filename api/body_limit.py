"""Request bodies over ``JIT_MAX_BODY_BYTES`` are refused with 413, before they are read.

A pure ASGI middleware in front of everything else, so it holds for every
endpoint, signed in or not: a declared ``Content-Length`` over the limit is
answered at once (the body is never read, and the connection is closed); a
chunked body is counted as it streams and cut at the limit. Either way the
answer is the API's error shape (api/errors.py).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import errors


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return int(value) if value.isdigit() else None  # a malformed one is the server's to refuse
    return None


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _refusal(self) -> errors.ApiError:
        return errors.TooLarge(
            f"request body is larger than {self.max_bytes} bytes (JIT_MAX_BODY_BYTES)",
            headers={"Connection": "close"},
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared is not None and declared > self.max_bytes:
            await errors.response(self._refusal())(scope, receive, send)
            return

        received = 0
        refused = False
        started = False

        async def counting_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    refused = True
                    if not started:
                        await errors.response(self._refusal())(scope, receive, send)
                    # The app sees the client gone: it stops reading and its answer is dropped.
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            # What the app makes of the "disconnect" (Starlette's ClientDisconnect) is
            # moot once the 413 is out; anything else is the app's own failure.
            if not refused:
                raise
