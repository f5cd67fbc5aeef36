"""For tests/test_scale_out.py: an OIDC-style issuer, and worker and API processes with nothing on disk in common.

- ``Issuer``: a JWKS served over HTTP on a free port, and identity tokens signed
  with its key, as an identity provider would issue them (the dev identity keeps
  its key in the data dir, which the processes here must not share).
- ``shared_env``: what every process of one deployment is given: Temporal, the
  database URL and the secrets (signing key, codec keys, password secret).
- ``Process``: ``python worker.py`` or ``uvicorn --factory api.app:create_app``,
  each in its own empty data dir, SIGKILL-able, its output kept in a log file.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.conftest import TEST_CATALOG, TEST_POLICIES, free_port

ROOT = Path(__file__).resolve().parent.parent
AUDIENCE = "jit-access"


class Issuer:
    def __init__(self, url: str, key: Ed25519PrivateKey):
        self.url = url
        self.key = key
        self.kid = uuid.uuid4().hex

    @property
    def jwks_url(self) -> str:
        return f"{self.url}/jwks"

    def jwks(self) -> dict:
        raw = self.key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        return {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": self.kid, "alg": "EdDSA", "use": "sig"}]}

    def auth(self, user: str, *groups: str) -> dict[str, str]:
        now = datetime.now(UTC)
        claims = {
            "iss": self.url,
            "aud": AUDIENCE,
            "sub": user,
            "groups": list(groups),
            "iat": int(now.timestamp()),
            "exp": int((now + timedelta(hours=1)).timestamp()),
        }
        token = jwt.encode(claims, self.key, algorithm="EdDSA", headers={"kid": self.kid})
        return {"Authorization": f"Bearer {token}"}


@contextmanager
def running_issuer() -> Iterator[Issuer]:
    port = free_port()
    issuer = Issuer(f"http://127.0.0.1:{port}", Ed25519PrivateKey.generate())
    body = json.dumps(issuer.jwks()).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/jwks" else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            if self.path == "/jwks":
                self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield issuer
    finally:
        server.shutdown()
        server.server_close()


def shared_env(temporal_address: str, namespace: str, database_url: str, issuer: Issuer) -> dict[str, str]:
    signing_key = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return {
        "JIT_TEMPORAL_ADDRESS": temporal_address,
        "JIT_TEMPORAL_NAMESPACE": namespace,
        "JIT_TASK_QUEUE": f"jit-scale-{uuid.uuid4()}",
        "JIT_CATALOG_PATH": str(TEST_CATALOG),
        "JIT_POLICIES_DIR": str(TEST_POLICIES),
        "JIT_DATABASE_URL": database_url,
        "JIT_SIGNING_KEY_PEM": signing_key.decode(),
        "JIT_CODEC_KEYS": f"k1:{base64.urlsafe_b64encode(os.urandom(32)).decode()}",
        "JIT_PG_PASSWORD_SECRET": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "JIT_OIDC_ISSUER": issuer.url,
        "JIT_OIDC_AUDIENCE": AUDIENCE,
        "JIT_OIDC_JWKS_URL": issuer.jwks_url,
        "JIT_DEV_IDENTITY": "0",
        # A task held by a killed worker moves to the other one after this long, not 10 s.
        "JIT_WORKER_STICKY_TIMEOUT_S": "1",
        "JIT_WORKER_METRICS_PORT": "0",
        "JIT_LOG_FORMAT": "text",
        "PYTHONUNBUFFERED": "1",
    }


class Process:
    """A worker or an API of the deployment, in ``workdir/<name>``; ``data`` starts empty."""

    def __init__(self, kind: str, name: str, workdir: Path, env: dict[str, str]):
        self.kind, self.name = kind, name
        self.dir = workdir / name
        self.data_dir = self.dir / "data"
        self.port = free_port() if kind == "api" else 0
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = self.dir / f"{kind}.log"
        self._env = {**os.environ, **env, "JIT_DATA_DIR": str(self.data_dir)}
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> Process:
        self.dir.mkdir(parents=True)
        if self.kind == "worker":
            cmd = [sys.executable, str(ROOT / "worker.py")]
        else:
            cmd = [sys.executable, "-m", "uvicorn", "--factory", "api.app:create_app"]
            cmd += ["--host", "127.0.0.1", "--port", str(self.port), "--no-access-log"]
        with open(self.log, "ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                *cmd, cwd=ROOT, env=self._env, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out
            )
        return self

    async def ready(self, timeout: float = 60) -> None:
        """An API is ready when it answers /readyz (Temporal up, a worker polling)."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2) as http:
            while True:
                if self.proc.returncode is not None:
                    raise RuntimeError(f"{self.name} exited ({self.proc.returncode}): see {self.log}")
                try:
                    if (await http.get(f"{self.url}/readyz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} not ready after {timeout:.0f}s: see {self.log}")
                await asyncio.sleep(0.1)

    async def kill(self) -> None:
        """SIGKILL: no shutdown, in-flight tasks and HTTP requests dropped."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.terminate()
        try:
            await asyncio.wait_for(self.proc.wait(), 15)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()

    def tail(self) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"--- {self.name} ({self.kind})\n{text[-2000:]}"
