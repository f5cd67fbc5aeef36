"""The three processes of a deployment, SIGKILLed and restarted on demand: the chaos harness's stack.

``ChaosStack`` runs ``temporal server start-dev`` (its SQLite file on disk, so
a restart finds every workflow and timer again), ``worker.py`` and the API
(uvicorn) as separate child processes on loopback ports fixed for the whole
run, in a data dir of their own. ``kill`` is SIGKILL (no goodbye to anyone);
``restart`` starts the same command again and returns once it serves. Each
worker or server outage is kept as an :class:`Outage`, from the kill until a
worker polls the task queue again: the time no grant could have ended.

Used by tests/test_chaos.py (bounded) and bench/chaos.py (long run).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest, GetSystemInfoRequest
from temporalio.client import Client

from core.dev_identity import mint_dev_token
from core.settings import Settings
from core.temporal import search_attribute_flags

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
CATALOG = ROOT / "tests/catalog.yaml"  # durations from 1 s; k8s:prod/logs auto-approved
POLICIES = ROOT / "tests/policies"
READY_TIMEOUT_S = 90.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Outage:
    """A worker or Temporal server down: from its SIGKILL until a worker polls again."""

    what: str
    down_at: datetime
    back_at: datetime | None = None


@dataclass
class Child:
    name: str
    cmd: list[str]
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def spawn(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, f"{self.name} already running"
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(  # noqa: S603 - our own programs, an argument list
                self.cmd, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )

    def sigkill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class ChaosStack:
    workdir: Path
    cache_size: int = 3  # the first worker's JIT_WORKER_MAX_CACHED_WORKFLOWS
    sticky_timeout_s: float = 1.0
    task_queue: str = "jit-chaos"
    outages: list[Outage] = field(default_factory=list)
    kills: dict[str, int] = field(default_factory=lambda: {"temporal": 0, "worker": 0, "api": 0})
    restarts: int = 0
    cache_sizes_used: list[int] = field(default_factory=list)
    worker_deaths: int = 0  # workers that exited on their own (not killed by us)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.temporal_port, api_port = free_port(), free_port()
        self.api_url = f"http://{HOST}:{api_port}"
        self.settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            data_dir=self.workdir / "data",
            catalog_path=CATALOG,
            policies_dir=POLICIES,
            temporal_address=f"{HOST}:{self.temporal_port}",
            task_queue=self.task_queue,
            dev_identity=True,
            worker_metrics_port=0,
        )
        env = {
            **os.environ,
            "JIT_DATA_DIR": str(self.settings.data_dir),
            "JIT_CATALOG_PATH": str(CATALOG),
            "JIT_POLICIES_DIR": str(POLICIES),
            "JIT_TEMPORAL_ADDRESS": self.settings.temporal_address,
            "JIT_TASK_QUEUE": self.task_queue,
            "JIT_DEV_IDENTITY": "1",
            "JIT_WORKER_METRICS_PORT": "0",
            # A killed worker's sticky queue holds its workflows' next task this long:
            # short, so that the wait a crash costs stays inside the measured outage.
            "JIT_WORKER_STICKY_TIMEOUT_S": str(self.sticky_timeout_s),
            # Workflows terminated through Temporal (the OUTSIDE scenarios) are found this fast.
            "JIT_RECONCILE_INTERVAL_S": "5",
            # As `make run`: every event to the console, its first attempt inline in the workflow
            # task, so crashes land mid-delivery too.
            "JIT_NOTIFICATIONS_PATH": str(ROOT / "config" / "notifications.yaml"),
            "PYTHONUNBUFFERED": "1",
        }
        self.temporal = Child(
            "temporal",
            [
                str(BIN / "temporal"), "server", "start-dev",
                "--ip", HOST, "--port", str(self.temporal_port), "--headless",
                "--http-port", str(free_port()), "--metrics-port", str(free_port()),
                "--db-filename", str(self.workdir / "temporal.sqlite"),
                "--sqlite-pragma", "journal_mode=wal",
                "--namespace", "default", *search_attribute_flags(), "--log-level", "error",
            ],
            env,
            self.workdir / "temporal.log",
        )  # fmt: skip
        self.worker = Child("worker", [sys.executable, str(ROOT / "worker.py")], env, self.workdir / "worker.log")
        self.api = Child(
            "api",
            [sys.executable, "-m", "uvicorn", "--factory", "api.app:create_app", "--host", HOST,
             "--port", str(api_port), "--no-access-log"],
            env,
            self.workdir / "api.log",
        )  # fmt: skip

    # -- identities ------------------------------------------------------------

    def auth(self, user: str, *groups: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {mint_dev_token(self.settings, user, list(groups))}"}

    # -- start, kill, restart ----------------------------------------------------

    async def start(self) -> None:
        # The dev identity key before any process reads it; the worker makes the
        # codec keys before the API starts, so no two processes race to create one.
        self.auth("setup")
        self.temporal.spawn()
        await self._wait_temporal()
        await self._start_worker(self.cache_size)
        self.api.spawn()
        await self._wait_api()

    async def kill(self, name: str) -> Outage | None:
        """SIGKILL ``name``; a worker or server outage is recorded (the API's is not: no timer waits on it)."""
        child = self._child(name)
        child.sigkill()
        self.kills[name] += 1
        if name == "api":
            return None
        outage = Outage(name, now())
        self.outages.append(outage)
        return outage

    async def restart(self, name: str, *, cache_size: int | None = None) -> None:
        """Start ``name`` again and wait until it serves (a worker polling, for an outage's end)."""
        self.restarts += 1
        if name == "temporal":
            self.temporal.spawn()
            await self._wait_temporal()
            if not self.worker.alive():
                # The worker gave up while its server was away: a finding, kept in its log.
                self.worker_deaths += 1
                await self._start_worker(self.cache_size)
        elif name == "worker":
            await self._start_worker(self.cache_size if cache_size is None else cache_size)
        else:
            self.api.spawn()
            await self._wait_api()
            return
        await self._wait_polling(self.worker)
        for outage in self.outages:
            if outage.back_at is None:
                outage.back_at = now()

    async def close(self) -> None:
        for child in (self.api, self.worker, self.temporal):
            if child.alive():
                assert child.proc is not None
                child.proc.terminate()
                try:
                    await asyncio.to_thread(child.proc.wait, 15)
                except subprocess.TimeoutExpired:
                    child.sigkill()

    async def client(self) -> Client:
        """A fresh client (one made before a server restart may still be reconnecting)."""
        return await Client.connect(self.settings.temporal_address, namespace=self.settings.temporal_namespace)

    def all_alive(self) -> bool:
        return all(c.alive() for c in (self.temporal, self.worker, self.api))

    def log_tails(self, chars: int = 2000) -> str:
        parts = []
        for child in (self.temporal, self.worker, self.api):
            if child.log.exists():
                parts.append(f"--- {child.name} ---\n{child.log.read_text(errors='replace')[-chars:]}")
        return "\n".join(parts)

    # -- waiting (polls with deadlines) ---------------------------------------------

    def _child(self, name: str) -> Child:
        return {"temporal": self.temporal, "worker": self.worker, "api": self.api}[name]

    async def _start_worker(self, cache_size: int) -> None:
        self.cache_size = cache_size
        self.worker.env = {**self.worker.env, "JIT_WORKER_MAX_CACHED_WORKFLOWS": str(cache_size)}
        self.cache_sizes_used.append(cache_size)
        self.worker.spawn()
        await self._wait_polling(self.worker)

    async def _wait_temporal(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if not self.temporal.alive():
                raise RuntimeError(f"temporal dev server exited:\n{self.log_tails()}")
            try:
                client = await self.client()
                await client.workflow_service.get_system_info(GetSystemInfoRequest(), timeout=timedelta(seconds=2))
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.1)

    async def _wait_polling(self, worker: Child) -> None:
        """Until this worker process (its pid is in its identity) polls the workflow task queue."""
        assert worker.proc is not None
        prefix = f"{worker.proc.pid}@"
        deadline = time.monotonic() + READY_TIMEOUT_S
        client: Client | None = None
        deaths = 0
        while True:
            if not worker.alive():
                # A worker that exits on its own (e.g. it lost its server at start-up) is a finding,
                # counted in worker_deaths and kept in its log; start it again, a few times at most.
                deaths += 1
                self.worker_deaths += 1
                if deaths > 3:
                    raise RuntimeError(f"worker keeps exiting:\n{self.log_tails()}")
                worker.spawn()
                assert worker.proc is not None
                prefix = f"{worker.proc.pid}@"
            try:
                client = client or await self.client()
                queue = await client.workflow_service.describe_task_queue(
                    DescribeTaskQueueRequest(
                        namespace=self.settings.temporal_namespace,
                        task_queue=TaskQueue(name=self.task_queue),
                        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
                    ),
                    timeout=timedelta(seconds=2),
                )
                if any(p.identity.startswith(prefix) for p in queue.pollers):
                    return
            except Exception:
                client = None
            if time.monotonic() > deadline:
                raise RuntimeError(f"worker {prefix} never polled:\n{self.log_tails()}")
            await asyncio.sleep(0.05)

    async def _wait_api(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        async with httpx.AsyncClient(timeout=2) as http:
            while True:
                if not self.api.alive():
                    raise RuntimeError(f"API exited:\n{self.log_tails()}")
                try:
                    if (await http.get(f"{self.api_url}/readyz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"API not ready:\n{self.log_tails()}")
                await asyncio.sleep(0.1)
