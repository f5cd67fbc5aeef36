"""The child processes of ``python -m devstack``: start them, show their output, notice a death, stop them in order.

Each child runs in its own process group (a terminal's Ctrl-C reaches only
devstack, which stops the children in order) with stdout and stderr piped to a
reader thread that prints every line with the child's name in front. Signals
and deaths arrive as events on one queue, which :meth:`Supervisor.wait_event`
turns into :class:`Interrupted` (exit 0) or :class:`Fatal` (exit 1).
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

STOP_TIMEOUT_S = 10.0
POLL_S = 0.2

_COLORS = {"devstack": "1", "temporal": "35", "worker": "36", "api": "32", "postgres": "34"}


class Fatal(Exception):
    """Stop everything and exit 1, with this one-line reason."""


class Interrupted(Exception):
    """Stop everything and exit 0: the operator asked for it."""


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


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    reader: threading.Thread | None = None


@dataclass
class Supervisor:
    console: Console
    children: list[Child] = field(default_factory=list)
    # (kind, name, detail): ("exit", child, returncode) from readers, ("signal", SIGINT, 0) from handlers.
    # SimpleQueue.put is safe to call from a signal handler.
    events: queue.SimpleQueue[tuple[str, str, int]] = field(default_factory=queue.SimpleQueue)
    stopping: bool = False

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

    def spawn(self, name: str, cmd: list[str], *, cwd: Path, env: dict[str, str], user: str | None = None) -> Child:
        """``user``: run as that system user (root only; PostgreSQL refuses to run as root)."""
        try:
            proc = subprocess.Popen(  # noqa: S603 - our own programs, an argument list, no shell
                cmd,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                process_group=0,  # a terminal's Ctrl-C reaches only us; we stop the children in order
                umask=0o077,  # what they write in the data dir (Temporal's SQLite file too) is the owner's alone
                user=user,
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
