"""Webhook receivers for the notification tests, each a real server in a thread on a free port.

- ``Receiver``: verifies every POST with core/webhook_signature.verify (401 if
  it fails, ``status`` otherwise) and records what came.
- ``Silent``: accepts a connection, reads the request's head and never answers.
- ``polled``: a plain condition wrapped for ``tests.e2e_support.wait_until``.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

from core.webhook_signature import ID_HEADER, SignatureError, verify

T = TypeVar("T")


def polled(check: Callable[[], T]) -> Callable[[], Awaitable[T]]:
    """A plain condition as ``wait_until`` polls it."""

    async def poll() -> T:
        return check()

    return poll


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class Receiver:
    secret: str
    status: int = 204
    url: str = ""
    accepted: list[Received] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    attempts: Counter[str] = field(default_factory=Counter)  # event id -> POSTs seen
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, headers: dict[str, str], body: bytes) -> int:
        with self._lock:
            self.attempts[headers.get(ID_HEADER, "")] += 1
            try:
                verify(self.secret, headers, body)
            except SignatureError as e:
                self.refused.append(str(e))
                return 401
            if self.status < 300:
                self.accepted.append(Received(headers, body))
            return self.status

    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.event for r in self.accepted]


@contextmanager
def receiving(secret: str, status: int = 204, answer_after_s: float = 0) -> Iterator[Receiver]:
    """``answer_after_s``: a slow receiver, answering each POST that long after it came."""
    receiver = Receiver(secret, status)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            code = receiver.handle(dict(self.headers.items()), body)
            time.sleep(answer_after_s)  # the receiver's own latency, not a wait in the test
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/jit"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Silent:
    """Reads each request's head (to count attempts by event id) and never answers."""

    url: str = ""
    attempts: Counter[str] = field(default_factory=Counter)
    _conns: list[socket.socket] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def hang_up(self) -> None:
        """Close every connection held: the deliveries waiting on them fail at once."""
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            conn.close()


@contextmanager
def silent() -> Iterator[Silent]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    hole = Silent(url=f"http://127.0.0.1:{listener.getsockname()[1]}/hooks/jit")
    stop = threading.Event()

    def read_head(conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                return
            data += chunk
        for line in data.split(b"\r\n\r\n")[0].decode(errors="replace").split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == ID_HEADER.lower():
                with hole._lock:
                    hole.attempts[value.strip()] += 1

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with hole._lock:
                hole._conns.append(conn)  # held open, never answered
            threading.Thread(target=read_head, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield hole
    finally:
        stop.set()
        listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        listener.close()
        hole.hang_up()
