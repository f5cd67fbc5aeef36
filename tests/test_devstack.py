"""``python -m devstack`` (what ``make run`` runs): starts, serves, stops cleanly, keeps its data."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import yaml

from core.dev_identity import mint_dev_token
from core.settings import Settings
from core.temporal import SEARCH_ATTRIBUTES, search_attribute_flags

ROOT = Path(__file__).resolve().parent.parent
START_DEADLINE_S = 60.0
STOP_DEADLINE_S = 30.0


def free_ports(n: int) -> list[int]:
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]


class Devstack:
    def __init__(self, data_dir: Path, log: Path, ports: list[int]) -> None:
        # A fourth port is the worker's metrics port; without one, no metrics server (port 0).
        self.temporal_port, self.ui_port, self.api_port, *metrics = ports
        self.metrics_port = metrics[0] if metrics else 0
        self.base_url = f"http://127.0.0.1:{self.api_port}"
        self.log = log
        self._out = log.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "devstack",
                "--data-dir", str(data_dir),
                "--temporal-port", str(self.temporal_port),
                "--ui-port", str(self.ui_port),
                "--api-port", str(self.api_port),
                "--worker-metrics-port", str(self.metrics_port),
            ],
            cwd=ROOT,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_DEADLINE_S
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"devstack exited with {self.proc.returncode}:\n{self.output()}"
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)  # polling a readiness endpoint, not synchronising on time
        self.kill()
        raise AssertionError(f"not ready within {START_DEADLINE_S}s:\n{self.output()}")

    def children(self) -> dict[str, int]:
        """The pids devstack says it started, by name."""
        return {name: int(pid) for name, pid in re.findall(r"started (\w+) \(pid (\d+)\)", self.output())}

    def interrupt(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=STOP_DEADLINE_S)
        finally:
            self._out.close()

    def kill(self) -> None:
        for pid in self.children().values():
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.kill()
        self.proc.wait()
        self._out.close()


def process_identity(pid: int) -> tuple[int, int] | None:
    """(start time, process group) from /proc, or None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, pgrp, ...
    if fields[0] == "Z":
        return None
    return int(fields[19]), int(fields[2])


def processes_in_groups(groups: set[int]) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            identity = process_identity(int(entry.name))
            if identity is not None and identity[1] in groups:
                found.append(int(entry.name))
    return found


def run_until_ready(data_dir: Path, log: Path, ports: list[int]) -> tuple[Devstack, dict[str, tuple[int, int]]]:
    stack = Devstack(data_dir, log, ports)
    stack.wait_ready()
    children = stack.children()
    assert set(children) == {"temporal", "worker", "api"}, stack.output()
    identities = {}
    for name, pid in children.items():
        identity = process_identity(pid)
        assert identity is not None, f"{name} (pid {pid}) is not running"
        identities[name] = identity
    return stack, identities


def stop_and_check_nothing_remains(stack: Devstack, children: dict[str, tuple[int, int]]) -> None:
    pids = stack.children()
    assert stack.interrupt() == 0, stack.output()
    for name, pid in pids.items():
        # Same pid and same start time: the very process we saw, not a recycled pid.
        assert process_identity(pid) != children[name], f"{name} (pid {pid}) is still running"
    # Children run in their own process groups: nothing they started may be left either.
    assert processes_in_groups(set(pids.values())) == []


def test_devstack_serves_stops_cleanly_and_keeps_its_data(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    ports = free_ports(4)

    first, children = run_until_ready(data_dir, tmp_path / "first.log", ports)
    try:
        token = mint_dev_token(Settings(data_dir=data_dir, _env_file=None), "alice", ["engineers"])
        auth = {"Authorization": f"Bearer {token}"}
        body = {
            "resource": "postgres:orders/public.orders",
            "action": "read",
            "duration": "15m",
            "reason": "INC-1 debugging",
        }
        created = httpx.post(f"{first.base_url}/v1/requests", json=body, headers=auth, timeout=30)
        assert created.status_code == 201, created.text
        request_id = created.json()["id"]
        assert created.json()["status"] == "pending"
        # The banner (printed once devstack saw /readyz too) has the operations URLs, and they answer.
        deadline = time.monotonic() + START_DEADLINE_S
        while "Ctrl-C stops everything" not in first.output() and time.monotonic() < deadline:
            time.sleep(0.1)  # polling the output for the banner, not synchronising on time
        banner = first.output()
        assert f"Worker metrics http://127.0.0.1:{first.metrics_port}/metrics" in banner, banner
        assert f"{first.base_url}/codec/login" in banner
        # The one-click sign-in the banner offers works: it signs the dev auditor in and goes to Temporal UI.
        dev_login = re.search(r"(http://\S+/codec/dev-login)", banner)
        assert dev_login, banner
        signed_in = httpx.get(dev_login.group(1), timeout=30)
        assert signed_in.status_code == 303, signed_in.text
        assert signed_in.headers["location"] == f"http://127.0.0.1:{first.ui_port}"
        decoded = httpx.post(
            f"{first.base_url}/codec/decode", json={"payloads": []}, cookies=signed_in.cookies, timeout=30
        )
        assert decoded.status_code == 200, decoded.text
        metrics = httpx.get(f"http://127.0.0.1:{first.metrics_port}/metrics", timeout=10).text
        assert "jit_approvals_pending" in metrics and "temporal_" in metrics
    except BaseException:
        first.kill()
        raise
    stop_and_check_nothing_remains(first, children)
    assert (data_dir / "temporal.sqlite").is_file()

    # Same data dir, same ports: the request filed before the restart is still there.
    second, children = run_until_ready(data_dir, tmp_path / "second.log", ports)
    try:
        again = httpx.get(f"{second.base_url}/v1/requests/{request_id}", headers=auth, timeout=30)
        assert again.status_code == 200, again.text
        assert (again.json()["id"], again.json()["requester"], again.json()["status"]) == (
            request_id,
            "alice",
            "pending",
        )
    except BaseException:
        second.kill()
        raise
    stop_and_check_nothing_remains(second, children)


def test_devstack_refuses_a_port_in_use_at_once(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        api_port = taken.getsockname()[1]
        temporal_port, ui_port = free_ports(2)
        result = subprocess.run(
            [
                sys.executable, "-m", "devstack",
                "--data-dir", str(tmp_path / "data"),
                "--temporal-port", str(temporal_port),
                "--ui-port", str(ui_port),
                "--api-port", str(api_port),
                "--worker-metrics-port", "0",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )  # fmt: skip
    assert result.returncode == 1
    assert f"port {api_port} (API) is already in use" in result.stderr
    assert "started" not in result.stdout  # nothing was started


def test_compose_registers_the_same_search_attributes_as_the_dev_server() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    script = " ".join(str(part) for part in compose["services"]["search-attributes"]["command"])
    registered = dict(re.findall(r"--name (\w+) --type (\w+)", script))
    flags = search_attribute_flags()
    expected = dict(flag.split("=") for flag in flags[1::2])
    assert registered == expected
    assert set(expected) == {key.name for key in SEARCH_ATTRIBUTES}
