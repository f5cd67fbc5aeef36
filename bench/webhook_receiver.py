"""A webhook receiver for the notifications benchmark, in a process of its own.

    python bench/webhook_receiver.py PORT

Answers every POST with 204 and ``GET /count`` with how many it took. Out of the
benchmark's own process, so that its threads never compete with the client whose
latency is measured.
"""

from __future__ import annotations

import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_count = 0
_lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        global _count
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with _lock:
            _count += 1
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802
        body = str(_count).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
