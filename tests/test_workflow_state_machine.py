"""Many histories, every one replayed: Hypothesis draws lifecycles, a model says what each call must answer.

Each example files one request through the REST API (auto-approved, or one approval from db-owners; a grant
of a few seconds or of ten minutes), then runs a drawn sequence of approve / deny / cancel / revoke / extend /
read / reads every 50 ms until the grant expires / "wait for the expiry" / "restart the worker" (an in-process worker stopped and a new one started on the
same task queue, caching 0 workflows or the default). Before each call the model says which status code must
come back and what the request must look like after; near a short grant's expiry either answer is allowed and
the model follows the one given (the racing caller must still be told the truth: what the answer said is what
the final view shows). Every request is then ended, and its history replayed with the current code.

Bounded: 40 examples, most under a second, those waiting for an expiry a few (about a minute on 2 cores); no shrinking, which would
rerun the slow examples many times: a failure prints its whole program.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from core.settings import Settings
from core.temporal import workflow_id
from tests.conftest import Stack, make_settings
from tests.e2e_support import running_stack
from worker import build_worker
from workflows.access_request import AccessRequestWorkflow

AUTO, APPROVED = "k8s:prod/logs", "postgres:orders/public.orders"
TERMINAL = {"denied", "cancelled", "timed_out", "failed", "expired", "revoked"}
NEAR_S = 1.5  # this close to a short grant's expiry, a call may land either side of it
DEFAULT_CACHE = 1000
# The smallest cache the settings allow (one slot kept free for query replays, worker.py):
# with more requests than that, most are out of cache at any moment.
SMALLEST_CACHE = 3

STEPS = st.one_of(
    st.sampled_from(["approve", "deny", "cancel", "revoke", "read", "wait_expiry", "reads_through_expiry"]),
    st.tuples(st.just("extend"), st.integers(1, 3)),
    st.tuples(st.just("restart"), st.sampled_from([SMALLEST_CACHE, DEFAULT_CACHE])),
)
PROGRAMS = st.fixed_dictionaries(
    {
        "resource": st.sampled_from([AUTO, APPROVED]),
        "duration_s": st.sampled_from([3, 4, 600]),
        "first_cache": st.sampled_from([SMALLEST_CACHE, DEFAULT_CACHE]),
        "steps": st.lists(STEPS, min_size=2, max_size=7),
    }
)


@dataclass
class Model:
    status: str
    expires_at: datetime | None = None
    extensions: int = 0
    approvals: int = 0
    log: list[str] = field(default_factory=list)

    def near_expiry(self) -> bool:
        if self.status != "active" or self.expires_at is None:
            return False
        return datetime.now(UTC) > self.expires_at - timedelta(seconds=NEAR_S)


class Run:
    """One example: the API (no worker inside), and an in-process worker this run stops and restarts."""

    def __init__(self, stack: Stack, program: dict[str, Any]):
        self.stack, self.program = stack, program
        self.alice = {"Authorization": f"Bearer {stack.token('alice', 'engineers')}"}
        self.bob = {"Authorization": f"Bearer {stack.token('bob', 'db-owners')}"}
        self.request_id = ""
        self.model = Model("pending")
        self.trace: list[str] = []

    async def call(self, verb: str, who: dict[str, str], body: dict[str, Any] | None = None) -> tuple[int, Any]:
        path = f"/v1/requests/{self.request_id}" + ("" if verb == "read" else f"/{verb}")
        r = await (
            self.stack.http.get(path, headers=who)
            if verb == "read"
            else self.stack.http.post(path, json=body or {}, headers=who)
        )
        self.trace.append(f"{verb} -> {r.status_code} {r.json().get('status', r.json()) if r.content else ''}")
        return r.status_code, r.json()

    def expect(self, verb: str, code: int, allowed: set[int], body: Any) -> None:
        assert code in allowed, (
            f"{verb}: expected {sorted(allowed)}, got {code} {body}\nprogram: {self.program}\ntrace: {self.trace}"
        )

    async def create(self) -> None:
        body = {
            "resource": self.program["resource"],
            "action": "read",
            "duration": self.program["duration_s"],
            "reason": "state machine",
        }
        r = await self.stack.http.post("/v1/requests", json=body, headers=self.alice)
        assert r.status_code == 201, r.text
        view = r.json()
        self.request_id = view["id"]
        want = "active" if self.program["resource"] == AUTO else "pending"
        assert view["status"] == want, view
        self.model.status = want
        self.model.expires_at = _dt(view.get("expires_at"))

    async def step(self, step: Any) -> None:
        m = self.model
        verb, arg = (step, None) if isinstance(step, str) else step
        racing = m.near_expiry()
        if verb in ("approve", "deny") and self.program["resource"] == AUTO:
            # Bob approves nothing on an auto-approved resource, so he may not even see it.
            code, view = await self.call(verb, self.bob, {"reason": "no"} if verb == "deny" else {"comment": "ok"})
            self.expect(verb, code, {404}, view)
        elif verb == "approve":
            code, view = await self.call("approve", self.bob, {"comment": "ok"})
            if m.status == "pending":
                self.expect(verb, code, {200}, view)
                assert view["status"] == "active", view
                m.status, m.expires_at, m.approvals = "active", _dt(view["expires_at"]), 1
            else:
                self.expect(verb, code, {409} | ({200} if racing else set()), view)
        elif verb in ("deny", "cancel"):
            code, view = await self.call(verb, self.bob if verb == "deny" else self.alice, {"reason": "no"})
            self.expect(verb, code, {200} if m.status == "pending" else {409}, view)
            if code == 200:
                m.status = "denied" if verb == "deny" else "cancelled"
                assert view["status"] == m.status, view
        elif verb == "revoke":
            code, view = await self.call("revoke", self.alice, {"reason": "done"})
            allowed = {200} if m.status == "active" and not racing else {200, 409} if racing else {409}
            self.expect(verb, code, allowed, view)
            if code == 200:
                assert view["status"] == "revoked", view
                m.status = "revoked"
            elif racing:
                m.status = "expired"
        elif verb == "extend":
            code, view = await self.call("extend", self.alice, {"duration": arg, "reason": f"more {len(self.trace)}"})
            allowed = {200} if m.status == "active" and not racing else {200, 409} if racing else {409}
            self.expect(verb, code, allowed, view)
            if code == 200:
                assert _dt(view["expires_at"]) == m.expires_at + timedelta(seconds=arg), (view, m)
                m.expires_at, m.extensions = _dt(view["expires_at"]), m.extensions + 1
        elif verb == "read":
            code, view = await self.call("read", self.alice)
            self.expect(verb, code, {200}, view)
            self.check_view(view, racing)
        elif verb == "reads_through_expiry" and m.status == "active" and self.program["duration_s"] < 60:
            # Reads every 50 ms across the timer's firing: with no workflow cached, each replays the history.
            deadline = time.monotonic() + 60
            while m.status == "active" and time.monotonic() < deadline:
                code, view = await self.call("read", self.alice)
                self.expect("read", code, {200}, view)
                self.check_view(view, racing=m.near_expiry())
                await asyncio.sleep(0.05)
        elif verb == "wait_expiry" and m.status == "active" and self.program["duration_s"] < 60:
            view = await self.until_terminal()
            assert view["status"] == "expired", view
            m.status = "expired"

    def check_view(self, view: dict[str, Any], racing: bool) -> None:
        m = self.model
        if racing and view["status"] == "expired":
            m.status = "expired"
        assert view["status"] == m.status, f"model {m}, view {view['status']}\ntrace: {self.trace}"
        assert _dt(view.get("expires_at")) == m.expires_at, (view, m)
        assert len(view["extensions"]) == m.extensions and len(view["approvals"]) == m.approvals, (view, m)

    async def finish(self) -> dict[str, Any]:
        """End what is still open as a user would, then the final view must be what the model says."""
        if self.model.status == "pending":
            await self.step("deny")
        elif self.model.status == "active":
            await self.step("revoke")
        view = await self.until_terminal()
        self.check_view(view, racing=False)
        return view

    async def until_terminal(self) -> dict[str, Any]:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            r = await self.stack.http.get(f"/v1/requests/{self.request_id}", headers=self.alice)
            if r.status_code == 200 and r.json()["status"] in TERMINAL:
                return r.json()
            await asyncio.sleep(0.1)
        raise AssertionError(f"request {self.request_id} never ended\nprogram: {self.program}\ntrace: {self.trace}")


class Workers:
    """An in-process worker on the stack's task queue; ``restart`` stops it and starts a new one."""

    def __init__(self, stack: Stack, executor: ThreadPoolExecutor):
        self.stack, self.executor = stack, executor
        self.exit = AsyncExitStack()

    async def start(self, cache: int) -> None:
        settings: Settings = self.stack.settings.model_copy(update={"worker_max_cached_workflows": cache})
        await self.exit.enter_async_context(build_worker(self.stack.client, settings, self.executor))

    async def restart(self, cache: int) -> None:
        await self.exit.aclose()
        self.exit = AsyncExitStack()
        await self.start(cache)


@settings(
    max_examples=40,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(program=PROGRAMS)
async def test_drawn_lifecycles_answer_as_the_model_says_and_replay(
    dev_env: WorkflowEnvironment, program: dict[str, Any]
) -> None:
    with TemporaryDirectory() as tmp, ThreadPoolExecutor(max_workers=4) as executor:
        api_settings = make_settings(dev_env.client, Path(tmp) / "data", worker_sticky_timeout_s=1.0)
        async with running_stack(api_settings, worker=False) as stack:
            workers = Workers(stack, executor)
            await workers.start(program["first_cache"])
            try:
                run = Run(stack, program)
                await run.create()
                for step in program["steps"]:
                    if isinstance(step, tuple) and step[0] == "restart":
                        await workers.restart(step[1])
                        run.trace.append(f"restart worker, cache {step[1]}")
                    else:
                        await run.step(step)
                await run.finish()
                handle = stack.client.get_workflow_handle(workflow_id(run.request_id))
                await asyncio.wait_for(handle.result(), 60)
                history = await handle.fetch_history()
            finally:
                await workers.exit.aclose()
            # The stack's converter: payloads are encrypted with this data dir's keys.
            replayer = Replayer(workflows=[AccessRequestWorkflow], data_converter=stack.client.data_converter)
            await replayer.replay_workflow(history)


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None
