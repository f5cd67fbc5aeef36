"""What the chaos run does to requests while processes die: file, approve, read, extend and revoke them.

Each request follows one scenario, through the REST API only, and keeps a
:class:`Trace` of every call (when sent, what came back) for the checks in
``chaos_checks.py``. Calls that change state at the racing moment (extend,
revoke) are sent once: an answer that never came, or a 503 ("may still be
applied"), is ambiguous and judged leniently. Approve, deny and cancel are
retried until they get a definite answer, since the scenario needs them.

The racing moment is the grant's expiry: an extend or revoke is sent within a
few hundred milliseconds of it, and reads hammer it (with a worker caching no
workflow, each read replays the whole history).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import cycle
from typing import Any

import httpx

from core.temporal import workflow_id
from tests.chaos_stack import ChaosStack, now

AUTO = "k8s:prod/logs"  # auto-approved
APPROVED = "postgres:orders/public.orders"  # one approval from db-owners
TERMINAL = {"denied", "cancelled", "timed_out", "failed", "expired", "revoked"}
AMBIGUOUS = {None, 502, 503, 504}  # no answer, or "may still be applied"
SCENARIOS = ("expire", "extend_race", "revoke_race", "read_race", "deny", "cancel")
# Ended from Temporal (UI, CLI) rather than the API: the grant (ten minutes) must still be revoked.
OUTSIDE = ("terminate", "cancel_workflow")
OUTSIDE_DURATION_S = 600


@dataclass
class Call:
    verb: str
    sent_at: datetime
    received_at: datetime
    status: int | None  # None: no answer (connection refused or dropped, timed out)
    body: Any = None
    note: str = ""  # the extend's reason: what identifies it in the final view
    kills_before: int = 0  # kills so far when it was sent (for creates across a kill)


@dataclass
class Trace:
    index: int
    scenario: str
    resource: str
    duration_s: int
    key: str
    calls: list[Call] = field(default_factory=list)
    request_id: str | None = None
    token: str | None = None  # an access token fetched while active, introspected at the end
    final: dict[str, Any] | None = None
    gave_up: str | None = None  # why the scenario could not finish
    ended_outside_at: datetime | None = None  # when Temporal was told to terminate/cancel the workflow
    revoked_after_s: float | None = None  # then how long until its token introspected inactive

    def of(self, verb: str) -> list[Call]:
        return [c for c in self.calls if c.verb == verb]


@dataclass
class WorkloadConfig:
    requests: int = 12
    window_s: float = 25.0  # requests start spread over this
    durations_s: tuple[int, int] = (3, 5)
    extend_s: int = 3
    seed: int = 1
    # A call retried this long, a request waited this long past its expiry, then given up:
    # a request stuck for good (a workflow task failing forever) is reported, not waited on.
    settle_s: float = 120.0
    outside: bool = False  # also end some workflows from Temporal directly (OUTSIDE scenarios)


class Workload:
    def __init__(self, stack: ChaosStack, config: WorkloadConfig, run_id: str):
        self.stack = stack
        self.config = config
        self.run_id = run_id
        self.rng = random.Random(config.seed)
        self.alice = stack.auth("alice", "engineers")
        self.bob = stack.auth("bob", "db-owners")
        self.http = httpx.AsyncClient(base_url=stack.api_url, timeout=40)
        self.traces: list[Trace] = []

    async def run(self) -> list[Trace]:
        scenarios = list(SCENARIOS) + (list(OUTSIDE) if self.config.outside else [])
        self.rng.shuffle(scenarios)
        picks = cycle(scenarios)
        tasks = []
        started = time.monotonic()
        for i in range(self.config.requests):
            scenario = next(picks)
            auto = scenario in OUTSIDE or (scenario not in ("deny", "cancel") and i % 2 == 0)
            trace = Trace(
                index=i,
                scenario=scenario,
                resource=AUTO if auto else APPROVED,
                duration_s=OUTSIDE_DURATION_S if scenario in OUTSIDE else self.rng.randint(*self.config.durations_s),
                key=f"{self.run_id}-{i}",
            )
            self.traces.append(trace)
            # Spread the starts over the window: a measured pause, not synchronisation.
            await asyncio.sleep(max(0.0, started + i * self.config.window_s / self.config.requests - time.monotonic()))
            tasks.append(asyncio.create_task(self._guarded(trace), name=f"request-{i}"))
        await asyncio.gather(*tasks)
        return self.traces

    async def close(self) -> None:
        await self.http.aclose()

    # -- one request ----------------------------------------------------------------

    async def _guarded(self, trace: Trace) -> None:
        try:
            await self._scenario(trace)
        except GiveUp as e:
            trace.gave_up = str(e)

    async def _scenario(self, t: Trace) -> None:
        body = {"resource": t.resource, "action": "read", "duration": t.duration_s, "reason": f"chaos {t.key}"}
        headers = {**self.alice, "Idempotency-Key": t.key}
        created = await self._settled(t, "create", "POST", "/v1/requests", headers, body)
        if created.status not in (200, 201):
            raise GiveUp(f"create answered {created.status}: {created.body}")
        t.request_id = created.body["id"]
        # The same request again, later, most often with a kill in between.
        duplicate = asyncio.create_task(self._duplicate_create(t, headers, body))
        path = f"/v1/requests/{t.request_id}"
        if t.resource == APPROVED:
            if t.scenario in ("deny", "cancel"):
                who, payload = (self.bob, {"reason": "chaos: no"}) if t.scenario == "deny" else (self.alice, {})
                await self._settled(t, t.scenario, "POST", f"{path}/{t.scenario}", who, payload)
                await self._until_terminal(t)
                await duplicate
                return
            await self._settled(t, "approve", "POST", f"{path}/approve", self.bob, {"comment": "chaos"})
        view = await self._until(t, lambda v: v["status"] == "active" or v["status"] in TERMINAL, "active")
        if view["status"] == "active":
            creds = await self._settled(t, "credentials", "GET", f"{path}/credentials", self.alice)
            if creds.status == 200:
                t.token = creds.body["access_token"]
            if t.scenario in OUTSIDE:
                await self._end_outside(t)
                await duplicate
                return
            await self._race(t, path, datetime.fromisoformat(view["expires_at"]))
        await self._until_terminal(t)
        await duplicate

    async def _race(self, t: Trace, path: str, expires_at: datetime) -> None:
        """At the expiry: reads hammer it (each replays the history when the worker caches nothing),
        and the scenario's extend or revoke is sent within a few hundred milliseconds of it."""
        jitter = timedelta(seconds=self.rng.uniform(-0.4, 0.2))
        period = 0.05 if t.scenario == "read_race" else 0.15
        if t.scenario == "extend_race":
            # One extend well before expiry (it must take effect), one at the new expiry (it may not).
            await _sleep_until(expires_at - timedelta(seconds=1.5))
            first = await self._extend(t, path, 1)
            if first.status == 200:
                expires_at = datetime.fromisoformat(first.body["expires_at"])
        reads = asyncio.create_task(self._hammer(t, path, expires_at, period))
        await _sleep_until(expires_at + jitter)
        if t.scenario == "extend_race":
            await self._extend(t, path, 2)
        elif t.scenario == "revoke_race":
            await self._call(t, "revoke", "POST", f"{path}/revoke", self.alice, {"reason": "chaos: racing expiry"})
        await reads

    async def _hammer(self, t: Trace, path: str, expires_at: datetime, period: float) -> None:
        await _sleep_until(expires_at - timedelta(seconds=1))
        end = expires_at + timedelta(seconds=1.5)
        while now() < end:
            await self._call(t, "get", "GET", path, self.alice, timeout=5)
            await asyncio.sleep(period)

    async def _end_outside(self, t: Trace) -> None:
        """Terminate or cancel the workflow through Temporal, as from its UI; then wait for the token to die."""
        assert t.request_id is not None
        deadline = time.monotonic() + self.config.settle_s
        while True:
            try:
                client = await self.stack.client()
                handle = client.get_workflow_handle(workflow_id(t.request_id))
                if t.scenario == "terminate":
                    await handle.terminate(reason="chaos: ended from Temporal UI")
                else:
                    await handle.cancel()
                break
            except Exception as e:  # Temporal down: try again until the deadline
                if time.monotonic() > deadline:
                    raise GiveUp(f"could not {t.scenario}: {e}") from e
                await asyncio.sleep(0.3)
        t.ended_outside_at = now()
        server = self.stack.auth("orders-db", "resource-servers")
        while time.monotonic() < deadline:
            r = await self._call(t, "introspect", "POST", "/v1/introspect", server, form={"token": t.token})
            if r.status == 200 and r.body == {"active": False}:
                t.revoked_after_s = (r.sent_at - t.ended_outside_at).total_seconds()
                break
            await asyncio.sleep(0.5)
        final = await self._call(t, "get", "GET", f"/v1/requests/{t.request_id}", self.alice, timeout=5)
        t.final = final.body if final.status == 200 else None

    async def _extend(self, t: Trace, path: str, n: int) -> Call:
        reason = f"chaos extend {t.key}/{n}"
        body = {"duration": self.config.extend_s, "reason": reason}
        return await self._call(t, "extend", "POST", f"{path}/extend", self.alice, body, note=reason)

    async def _duplicate_create(self, t: Trace, headers: dict[str, str], body: dict[str, Any]) -> None:
        await asyncio.sleep(self.rng.uniform(0.5, min(t.duration_s, 8) + 2.0))  # a random later moment
        await self._settled(t, "create", "POST", "/v1/requests", headers, body)

    async def _until_terminal(self, t: Trace) -> None:
        t.final = await self._until(t, lambda v: v["status"] in TERMINAL, "a terminal state")

    async def _until(self, t: Trace, done: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        """Poll the request (GET, as its requester) until ``done``; give up after ``settle_s``."""
        deadline = time.monotonic() + self.config.settle_s + t.duration_s + 2 * self.config.extend_s
        last: Call | None = None
        while time.monotonic() < deadline:
            last = await self._call(t, "get", "GET", f"/v1/requests/{t.request_id}", self.alice, timeout=5)
            if last.status == 200 and done(last.body):
                return last.body
            await asyncio.sleep(0.2)
        raise GiveUp(f"never reached {what}; last read {last.status if last else None}: {last.body if last else ''}")

    # -- calls ----------------------------------------------------------------------

    async def _settled(
        self, t: Trace, verb: str, method: str, path: str, headers: dict[str, str], body: Any = None
    ) -> Call:
        """Retry while the answer is ambiguous (API or Temporal down); every attempt is traced."""
        deadline = time.monotonic() + self.config.settle_s
        while True:
            call = await self._call(t, verb, method, path, headers, body)
            if call.status not in AMBIGUOUS or time.monotonic() > deadline:
                return call
            await asyncio.sleep(0.3)

    async def _call(
        self,
        t: Trace,
        verb: str,
        method: str,
        path: str,
        headers: dict[str, str],
        body: Any = None,
        *,
        note: str = "",
        timeout: float = 40,
        form: dict[str, Any] | None = None,
    ) -> Call:
        sent, kills = now(), sum(self.stack.kills.values())
        try:
            r = await self.http.request(method, path, headers=headers, json=body, data=form, timeout=timeout)
        except httpx.HTTPError:
            call = Call(verb, sent, now(), None, note=note, kills_before=kills)
        else:
            try:
                payload = r.json()
            except ValueError:
                payload = r.text
            call = Call(verb, sent, now(), r.status_code, payload, note, kills)
        t.calls.append(call)
        return call


class GiveUp(Exception):
    """The scenario could not go on (a call never settled): the checks report the request."""


async def _sleep_until(at: datetime) -> None:
    """The racing moment is the test's subject, not a synchronisation: wait for the wall clock to reach it."""
    delay = (at - datetime.now(UTC)).total_seconds()
    if delay > 0:
        await asyncio.sleep(delay)


async def inject_faults(
    stack: ChaosStack,
    stop: asyncio.Event,
    *,
    rng: random.Random,
    plan: tuple[str, ...] = ("worker", "api", "temporal", "worker"),
    cache_sizes: tuple[int, ...] = (3, 1000),
    gap_s: tuple[float, float] = (4.0, 7.0),
    down_s: tuple[float, float] = (1.0, 2.5),
    on_event: Callable[[str], Awaitable[None] | None] | None = None,
    round_done: asyncio.Event | None = None,
) -> None:
    """Until ``stop``: wait a while, SIGKILL the next process of ``plan``, keep it down a while, restart it.

    Each worker restart takes the next of ``cache_sizes`` for JIT_WORKER_MAX_CACHED_WORKFLOWS.
    ``round_done`` is set once each kind of process in ``plan`` has been killed and restarted: on a slow
    machine the workload can end first, and a run that never killed one kind proves nothing about it."""
    faults, caches = cycle(plan), cycle(cache_sizes)
    killed: set[str] = set()
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), rng.uniform(*gap_s))
            return
        except TimeoutError:
            pass
        name = next(faults)
        await stack.kill(name)
        down = rng.uniform(*down_s)
        await asyncio.sleep(down)  # the downtime itself: the fault injected, measured by the outage
        cache = next(caches) if name == "worker" else None
        await stack.restart(name, cache_size=cache)
        if on_event is not None:
            note = on_event(
                f"killed {name}, down {down:.1f}s" + (f", worker cache {cache}" if cache is not None else "")
            )
            if note is not None:
                await note
        killed.add(name)
        if round_done is not None and killed >= set(plan):
            round_done.set()
