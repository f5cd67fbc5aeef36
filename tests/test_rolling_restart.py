"""A rolling restart of every process during a stream of requests loses none.

One Temporal dev server; ``worker.py`` and the API (``uvicorn --factory
api.app:create_app``) as subprocesses, as bench/stack.py and the image start them.
While clients file requests (auto-approved ones, and ones an approver approves):
start a second worker, SIGTERM the first; start a second API, move the clients to
it, SIGTERM the first. Then every filed request must be active, each exactly once,
and every HTTP call must have succeeded or failed in a way a client retries (a
refused connection, 502/503/504), retried with the same Idempotency-Key.

The processes share one data dir (signing keys, grant store): JIT_DATABASE_URL,
which makes them share nothing but Temporal and PostgreSQL, is another change.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from core.dev_identity import mint_dev_token
from tests.conftest import TEST_POLICIES, dev_server, free_port, make_settings
from tests.e2e_support import wait_until, worker_env

ROOT = Path(__file__).resolve().parent.parent
# What a client retries: the API was not there (any more), or the proxy said so.
RETRYABLE_STATUS = {502, 503, 504}
RETRYABLE_ERRORS = (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)
CLIENTS = 3


@dataclass
class Process:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def sigterm_and_wait(self, timeout: float = 30) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def text(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class Traffic:
    """The clients' shared view: where the API is, and what happened."""

    url: str
    filed: dict[str, str] = field(default_factory=dict)  # Idempotency-Key -> request id
    retried: list[str] = field(default_factory=list)  # "POST /v1/requests: ConnectError", ...
    stop: asyncio.Event = field(default_factory=asyncio.Event)


def _spawn(name: str, cmd: list[str], env: dict[str, str], tmp: Path) -> Process:
    log = tmp / f"{name}.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603
    return Process(name, proc, log)


def _worker(name: str, env: dict[str, str], tmp: Path) -> Process:
    return _spawn(name, [sys.executable, str(ROOT / "worker.py")], env, tmp)


def _api(name: str, env: dict[str, str], tmp: Path) -> tuple[Process, str]:
    port = free_port()
    cmd = [
        sys.executable, "-m", "uvicorn", "--factory", "api.app:create_app",
        "--host", "127.0.0.1", "--port", str(port), "--timeout-graceful-shutdown", "20",
    ]  # fmt: skip
    return _spawn(name, cmd, env, tmp), f"http://127.0.0.1:{port}"


async def _ready(http: httpx.AsyncClient, url: str, proc: Process) -> None:
    async def check() -> bool:
        assert proc.proc.poll() is None, f"{proc.name} exited:\n{proc.text()[-3000:]}"
        try:
            return (await http.get(f"{url}/readyz")).status_code == 200
        except httpx.HTTPError:
            return False

    await wait_until(check, timeout=60, what=f"{proc.name} ready")


async def _polling(client: Client, task_queue: str, pid: int) -> bool:
    """``pid``'s worker polls the workflow task queue (its identity is ``pid@host``)."""
    answer = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    return any(p.identity.startswith(f"{pid}@") for p in answer.pollers)


async def _call(
    http: httpx.AsyncClient,
    traffic: Traffic,
    method: str,
    path: str,
    *,
    conflict_after_retry_ok: bool = False,
    **kw: Any,
) -> dict[str, Any] | None:
    """One logical call, retried (same headers, same Idempotency-Key) while the answer says retry."""
    deadline = time.monotonic() + 30
    retried = False
    while True:
        try:
            r = await http.request(method, f"{traffic.url}{path}", **kw)
        except RETRYABLE_ERRORS as e:
            reason = type(e).__name__
        else:
            if r.status_code in (200, 201):
                return r.json()
            if r.status_code == 409 and retried and conflict_after_retry_ok:
                return None  # the first attempt got through before its connection broke
            assert r.status_code in RETRYABLE_STATUS, f"{method} {path}: {r.status_code} {r.text}"
            reason = str(r.status_code)
        traffic.retried.append(f"{method} {path}: {reason}")
        retried = True
        assert time.monotonic() < deadline, f"{method} {path}: still failing after 30 s ({reason})"
        await asyncio.sleep(0.05)  # back-off before the retry, not a synchronisation


async def _client(http: httpx.AsyncClient, traffic: Traffic, n: int, alice: str, bob: str) -> None:
    for i in itertools.count():
        if traffic.stop.is_set():
            return
        key = f"client{n}-{i}"
        auto = i % 2 == 0
        body = {
            "resource": "k8s:prod/logs" if auto else "postgres:orders/public.orders",
            "action": "read",
            "duration": "1h",
            "reason": f"rolling restart {key}",
        }
        headers = {"Authorization": f"Bearer {alice}", "Idempotency-Key": key}
        view = await _call(http, traffic, "POST", "/v1/requests", json=body, headers=headers)
        assert view is not None
        traffic.filed[key] = view["id"]
        if not auto:
            await _call(
                http,
                traffic,
                "POST",
                f"/v1/requests/{view['id']}/approve",
                json={},
                headers={"Authorization": f"Bearer {bob}"},
                conflict_after_retry_ok=True,
            )


async def test_a_rolling_restart_of_every_process_loses_no_request(tmp_path: Path) -> None:
    async with dev_server() as env:
        settings = make_settings(env.client, tmp_path / "data", policies_dir=TEST_POLICIES)
        # Minted here first: this also makes the data dir and the dev issuer's key before anyone else.
        alice = mint_dev_token(settings, "alice", [])
        bob = mint_dev_token(settings, "bob", ["db-owners"])
        app_env = worker_env(
            settings,
            {
                "JIT_POLICIES_DIR": str(TEST_POLICIES),
                "JIT_DEV_IDENTITY": "1",
                "JIT_SETTLE_WAIT_S": "20",
                "JIT_LOG_FORMAT": "text",
            },
        )
        procs: list[Process] = []
        clients: list[asyncio.Task[None]] = []
        try:
            async with httpx.AsyncClient(timeout=40) as http:
                worker1 = _worker("worker1", app_env, tmp_path)
                procs.append(worker1)
                api1, url1 = _api("api1", app_env, tmp_path)
                procs.append(api1)
                await _ready(http, url1, api1)  # ready: a worker polls the task queue too

                traffic = Traffic(url1)
                clients += [asyncio.create_task(_client(http, traffic, n, alice, bob)) for n in range(CLIENTS)]

                async def progress(more: int) -> None:
                    target = len(traffic.filed) + more

                    async def moved() -> bool:
                        for task in clients:
                            if task.done():
                                task.result()  # a client's assertion, raised here
                        return len(traffic.filed) >= target

                    await wait_until(moved, timeout=40, what=f"{more} more requests filed")

                await progress(6)

                # The workers: a second one, then SIGTERM the first (mid-stream).
                worker2 = _worker("worker2", app_env, tmp_path)
                procs.append(worker2)
                await wait_until(
                    lambda: _polling(env.client, settings.task_queue, worker2.proc.pid),
                    timeout=60,
                    what="worker2 polling",
                )
                assert await asyncio.to_thread(worker1.sigterm_and_wait) == 0, worker1.text()[-3000:]
                assert "worker stopped" in worker1.text()
                await progress(6)

                # The APIs: a second one, the clients moved to it, then SIGTERM the first.
                api2, url2 = _api("api2", app_env, tmp_path)
                procs.append(api2)
                await _ready(http, url2, api2)
                traffic.url = url2
                # uvicorn answers what it has, runs the lifespan's shutdown, then re-raises
                # the signal (exit status -15), as a process ended by SIGTERM should.
                assert await asyncio.to_thread(api1.sigterm_and_wait) in (0, -signal.SIGTERM)
                assert "Application shutdown complete" in api1.text(), api1.text()[-3000:]
                await progress(6)

                traffic.stop.set()
                await asyncio.gather(*clients)

                # Every request filed once, and active: approved ones approved, none lost.
                assert len(set(traffic.filed.values())) == len(traffic.filed)
                auth = {"Authorization": f"Bearer {alice}"}

                async def all_active() -> bool:
                    for request_id in traffic.filed.values():
                        r = await http.get(f"{url2}/v1/requests/{request_id}", headers=auth)
                        assert r.status_code == 200, r.text
                        status = r.json()["status"]
                        assert status in ("pending", "provisioning", "active"), f"{request_id}: {status}"
                        if status != "active":
                            return False
                    return True

                await wait_until(all_active, timeout=30, what="every filed request active")

                # Nothing started twice: as many request workflows as Idempotency-Keys.
                async def counted() -> bool:
                    count = await env.client.count_workflows(
                        f"TaskQueue = '{settings.task_queue}' AND WorkflowType = 'AccessRequestWorkflow'"
                    )
                    return count.count == len(traffic.filed)

                await wait_until(counted, timeout=15, what="one workflow per filed request")
                for line in traffic.retried:
                    print("retried:", line)
                for proc in (worker1, api1):
                    assert "Traceback" not in proc.text(), f"{proc.name}:\n{proc.text()[-3000:]}"
        finally:
            for task in clients:
                task.cancel()
            for proc in procs:
                proc.stop()
