"""A local stand-in for Slack: the Web API methods jit-access calls, and the ``response_url`` receiver.

A real HTTP server (stdlib, on a free port, in a thread): slack-sdk's
``WebClient`` is pointed at ``{url}/api/`` through the channel's ``base_url``
and talks to it over HTTP as it would to slack.com. ``chat.postMessage`` and
``chat.update`` are recorded and answered as Slack answers them
(``{"ok": true, "channel": …, "ts": …}``); a POST under ``/respond/`` is
recorded as an ephemeral answer to a click. ``sign`` makes an interaction
call as Slack signs it (``v0=HMAC-SHA256(secret, "v0:{ts}:{body}")``).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode


@dataclass
class Call:
    method: str  # chat.postMessage, chat.update
    args: dict[str, Any]
    token: str
    answer: dict[str, Any] = field(default_factory=dict)  # what the fake answered (channel, ts)


@dataclass
class FakeSlack:
    url: str = ""
    calls: list[Call] = field(default_factory=list)
    answers: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # response_url path → bodies
    emails: dict[str, str] = field(default_factory=dict)  # Slack user id → profile email (users.info)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ts: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    def posted(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def response_url(self) -> str:
        """A fresh ``response_url`` of this fake, for one click."""
        return f"{self.url}/respond/{uuid.uuid4().hex}"

    def answered(self, response_url: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.answers.get(response_url.removeprefix(self.url), []))

    def _record(self, path: str, body: bytes, content_type: str, auth: str) -> dict[str, Any]:
        if path.startswith("/respond/"):
            with self._lock:
                self.answers.setdefault(path, []).append(json.loads(body))
            return {"ok": True}
        method = path.removeprefix("/api/")
        if content_type.startswith("application/json"):
            args = json.loads(body or b"{}")
        else:
            args = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        if method not in ("chat.postMessage", "chat.update", "users.info"):
            return {"ok": False, "error": "unknown_method"}
        if not auth.startswith("Bearer xoxb-"):
            return {"ok": False, "error": "not_authed"}
        if method == "users.info":
            email = self.emails.get(str(args.get("user")))
            if email is None:
                return {"ok": False, "error": "user_not_found"}
            return {"ok": True, "user": {"id": args.get("user"), "profile": {"email": email}}}
        if isinstance(args.get("blocks"), str):
            args["blocks"] = json.loads(args["blocks"])
        channel = str(args.get("channel"))
        # Slack answers a DM to a user id with the DM's channel id (D…).
        channel = "D" + channel[1:] if channel.startswith("U") else channel
        with self._lock:
            ts = args.get("ts") or f"{int(time.time())}.{next(self._ts):06d}"
            answer = {"ok": True, "channel": channel, "ts": ts}
            self.calls.append(Call(method, args, auth.removeprefix("Bearer "), answer))
        return answer


@contextmanager
def fake_slack() -> Iterator[FakeSlack]:
    fake = FakeSlack()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            answer = fake._record(
                self.path, body, self.headers.get("Content-Type", ""), self.headers.get("Authorization", "")
            )
            data = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


def response_url_of(body: bytes) -> str:
    """The ``response_url`` inside a click's form body."""
    return str(json.loads(parse_qs(body.decode())["payload"][0])["response_url"])


def click_body(action: str, request_id: str, slack_user: str, response_url: str) -> bytes:
    """The form Slack posts when ``slack_user`` clicks a button (``block_actions``), trimmed to what matters."""
    payload = {
        "type": "block_actions",
        "user": {"id": slack_user, "username": slack_user.lower(), "team_id": "T0TEST"},
        "team": {"id": "T0TEST"},
        "response_url": response_url,
        "actions": [{"type": "button", "action_id": action, "value": request_id, "block_id": f"jit:{request_id}"}],
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The headers Slack sends with ``body``, signed with ``secret`` at ``timestamp`` (now by default)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    return {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": f"v0={digest}",
        "Content-Type": "application/x-www-form-urlencoded",
    }
