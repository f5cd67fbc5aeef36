"""A webhook receiver for the notifications benchmark, in a process of its own.

    python bench/webhook_receiver.py PORT

Answers every POST with 204 and ``GET /count`` with how many it took: a minimal
HTTP/1.1 server on asyncio (keep-alive, Content-Length bodies), so that the two
cores it shares with the stack go to jit-access, not to a receiver's own
overhead. Out of the benchmark's own process, so that it never competes with the
client whose latency is measured.
"""

from __future__ import annotations

import asyncio
import sys

_count = 0


class Receiver(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._buffer = b""

    def data_received(self, data: bytes) -> None:
        global _count
        self._buffer += data
        while True:
            head_end = self._buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self._buffer[:head_end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            end = head_end + 4 + length
            if len(self._buffer) < end:
                return
            self._buffer = self._buffer[end:]
            if head.startswith("POST "):
                _count += 1
                self._transport.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
            else:
                body = str(_count).encode()
                self._transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


async def main(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(Receiver, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
