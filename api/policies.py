"""The API's access policies: loaded at start-up, reloaded on SIGHUP and when the files change.

One :class:`PolicyRuntime` per app holds a ``policy.PolicyHolder``. ``engine()``
is what every request decides with: it first looks at the files' mtimes (at most
once per ``policy_check_interval_s``, so a busy API stats a handful of files once
a second) and reloads if they changed. A reload that fails logs every problem as
``file:line: message`` and keeps the last good engine: a typo never leaves the
service without rules. Engines are immutable, so a request decided with one engine
records that engine's version, whatever reloads happen meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from policy import PolicyEngine, PolicyHolder

log = logging.getLogger("jit.api.policy")

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class PolicyRuntime:
    def __init__(self, holder: PolicyHolder, *, check_interval_s: float = 1.0, clock: Clock = utc_now):
        self.holder = holder
        self.check_interval_s = check_interval_s
        # What the policies see as "now" (hour, weekday): the wall clock, or a fixed
        # instant in tests so that time-of-day rules do not depend on when they run.
        self.clock = clock
        self.attempts = 0  # reloads tried, for whoever waits on one (tests, SIGHUP)
        self.sighup = False  # whether SIGHUP reloads (install_sighup)
        self._checked_at = time.monotonic()
        self._attempted = asyncio.Event()

    @classmethod
    def load(
        cls, policies_dir: Path, catalog_path: Path, *, check_interval_s: float = 1.0, clock: Clock = utc_now
    ) -> PolicyRuntime:
        """Raises policy.PolicyError (every problem as ``file:line: message``) if nothing loads."""
        return cls(PolicyHolder(policies_dir, catalog_path), check_interval_s=check_interval_s, clock=clock)

    @property
    def version(self) -> str:
        return self.holder.version

    def engine(self) -> PolicyEngine:
        """The current engine, after a cheap check of the files (at most once per interval)."""
        now = time.monotonic()
        if now - self._checked_at >= self.check_interval_s:
            self._checked_at = now
            if self.holder.changed():
                self.reload("the policy files changed")
        return self.holder.engine

    def reload(self, why: str) -> list[str]:
        """Rebuild from the files; [] on success, else the errors (the last good engine stays)."""
        before = self.holder.version
        errors = self.holder.reload()
        self.attempts += 1
        self._attempted.set()
        self._attempted = asyncio.Event()
        if errors:
            log.error("policy reload (%s) failed; still deciding with %s:\n%s", why, before, "\n".join(errors))
        elif self.holder.version != before:
            log.info("policies reloaded (%s): %s -> %s", why, before, self.holder.version)
        else:
            log.info("policies reloaded (%s): unchanged, %s", why, before)
        return errors

    async def wait_for_reload(self, after: int) -> None:
        """Return once more than ``after`` reloads have been tried."""
        while self.attempts <= after:
            await self._attempted.wait()

    # -- SIGHUP ----------------------------------------------------------------------

    def install_sighup(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Reload on SIGHUP, where the platform and the thread allow it; False if not."""
        self.sighup = _SIGHUP.add(loop, self)
        return self.sighup

    def remove_sighup(self, loop: asyncio.AbstractEventLoop) -> None:
        _SIGHUP.remove(loop, self)
        self.sighup = False


class _SighupHub:
    """One loop signal handler for every runtime on that loop (tests run several apps at once)."""

    def __init__(self) -> None:
        self._runtimes: dict[asyncio.AbstractEventLoop, list[PolicyRuntime]] = {}

    def add(self, loop: asyncio.AbstractEventLoop, runtime: PolicyRuntime) -> bool:
        sighup = getattr(signal, "SIGHUP", None)
        if sighup is None:
            return False  # Windows
        runtimes = self._runtimes.get(loop)
        if runtimes is None:
            try:
                loop.add_signal_handler(sighup, self._fire, loop)
            except (NotImplementedError, RuntimeError, ValueError) as e:  # not the main thread, or no support
                log.info("no SIGHUP reload here (%s); the policy files are still watched", e)
                return False
            runtimes = self._runtimes[loop] = []
        runtimes.append(runtime)
        return True

    def remove(self, loop: asyncio.AbstractEventLoop, runtime: PolicyRuntime) -> None:
        runtimes = self._runtimes.get(loop)
        if runtimes is None or runtime not in runtimes:
            return
        runtimes.remove(runtime)
        if not runtimes:
            del self._runtimes[loop]
            loop.remove_signal_handler(signal.SIGHUP)

    def _fire(self, loop: asyncio.AbstractEventLoop) -> None:
        for runtime in list(self._runtimes.get(loop, [])):
            runtime.reload("SIGHUP")


_SIGHUP = _SighupHub()
