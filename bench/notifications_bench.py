"""``make bench`` (part): what notifications cost the lifecycle, on beside off in the same run.

    .venv/bin/python bench/notifications_bench.py [--quick] [--no-write]

One Temporal dev server; two copies of the project (worker + API), one with no
notifications file and one sending every event of every request to the console
and to a local webhook receiver (signed, as production would). Measures
auto-approved request -> credentials latency (back to back, and one at a time on a
settled stack, the two copies taking turns) and lifecycle throughput (create -> approve -> active -> expire,
concurrency 8 and 32); writes the "Notifications cost" section of docs/benchmarks.md.
The target: "on" at >= 0.9x of "off" for both.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from statistics import mean
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
for p in (str(ROOT), str(BENCH)):
    if p not in sys.path:
        sys.path.insert(0, p)

import facts  # noqa: E402
import httpx  # noqa: E402
import stack  # noqa: E402
from doc import pct, run_section  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from run import LOGS, auth, log, project_latency, project_lifecycles  # noqa: E402
from temporalio.client import Client  # noqa: E402

from core.dev_identity import mint_dev_token  # noqa: E402
from core.temporal import workflow_id  # noqa: E402

SECTION = "## Notifications cost"
SECRET_ENV = "JIT_BENCH_WEBHOOK_SECRET"  # noqa: S105 - a variable name
CONFIG = """
channels:
  console: {{type: console}}
  hook: {{type: webhook, url: "{url}", secret_env: {secret_env}}}
routes:
  - {{audience: approvers, to: [console, hook]}}
  - {{audience: requester, to: [console, hook]}}
  - {{audience: security, to: [console, hook]}}
  - {{audience: operations, to: [console, hook]}}
"""


@contextmanager
def receiver() -> Any:
    """bench/webhook_receiver.py in a process of its own: (URL, a function that says how many it took)."""
    port = stack.free_port()
    proc = subprocess.Popen([sys.executable, str(BENCH / "webhook_receiver.py"), str(port)])  # noqa: S603
    url = f"http://127.0.0.1:{port}"
    try:
        stack.wait_http(f"{url}/count", proc)
        yield f"{url}/events", lambda: int(httpx.get(f"{url}/count", timeout=5).text)
    finally:
        stack.stop(proc)


def delivery_counts(port: int) -> dict[str, float]:
    """From the "on" worker's /metrics: deliveries made, and those whose inline attempt missed."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    counts = {"sent": 0.0, "deferred": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in ("jit_notifications_sent_total", "jit_notifications_deferred_total"):
                counts[sample.name.split("_")[2]] += sample.value
    return counts


async def quiet(client: Client) -> None:
    """Until no request of either copy runs: each measure starts on an idle server and worker,
    not behind the expiries (and their notifications) of the one before."""
    deadline = time.monotonic() + 120
    while (await client.count_workflows("ExecutionStatus = 'Running'")).count:
        if time.monotonic() > deadline:
            raise RuntimeError("requests still running after 120 s")
        await asyncio.sleep(0.5)


async def _settled(handle: Any) -> None:
    """Until the request's workflow is idle: no activity running (its "active" delivery, when
    on) and no workflow task to run (the one that delivery's completion brings)."""
    while True:
        raw = (await handle.describe()).raw_description
        if not raw.pending_activities and not raw.HasField("pending_workflow_task"):
            return
        await asyncio.sleep(0.02)


async def one_at_a_time(apps: dict[str, stack.App], client: Client, samples: int) -> dict[str, float]:
    """Auto-approved -> credentials p50 per app, each request filed once the one before is
    settled (its deliveries done): a request's own path, without the load of the ones before
    it. The apps take turns request by request, so that the machine's drift (large on this
    shared VM) falls on both alike. The grants are long (10 minutes, so none expires
    meanwhile) and revoked after."""
    body = {"resource": LOGS, "action": "read", "duration": "10m", "reason": "bench, one at a time"}
    took: dict[str, list[float]] = {name: [] for name in apps}
    ids: dict[str, list[str]] = {name: [] for name in apps}
    https = {name: httpx.AsyncClient(base_url=app.url, timeout=60) for name, app in apps.items()}
    alice = {name: auth(mint_dev_token(app.settings, "alice", ["engineers"])) for name, app in apps.items()}
    try:
        for _ in range(samples):
            for name in apps:
                http = https[name]
                t0 = time.perf_counter()
                created = await http.post("/v1/requests", json=body, headers=alice[name])
                rid = created.json()["id"]
                creds = await http.get(f"/v1/requests/{rid}/credentials", headers=alice[name])
                took[name].append((time.perf_counter() - t0) * 1000)
                if created.status_code != 201 or creds.status_code != 200:
                    raise RuntimeError(f"one at a time: {created.status_code} {creds.status_code} {creds.text[:200]}")
                ids[name].append(rid)
                await _settled(client.get_workflow_handle(workflow_id(rid)))
        for name, http in https.items():
            for rid in ids[name]:
                await http.post(f"/v1/requests/{rid}/revoke", json={"reason": "bench over"}, headers=alice[name])
    finally:
        for http in https.values():
            await http.aclose()
    return {name: pct(values, 0.5) for name, values in took.items()}


async def measure(app: stack.App, client: Client, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    await quiet(client)
    lat = await project_latency(app, args.samples)
    out["latency_p50_ms"], out["latency_p99_ms"] = lat["p50_ms"], lat["p99_ms"]
    for c in args.concurrency:
        await quiet(client)
        found = await project_lifecycles(app, c, args.per_loop, 2)
        out[f"c{c}"] = found["per_s"]
    return out


async def main_run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    res: dict[str, Any] = {"facts": facts.machine(), "rounds": args.rounds, "off": [], "on": []}
    with receiver() as (url, received):
        config = workdir / "notifications.yaml"
        config.write_text(CONFIG.format(url=url, secret_env=SECRET_ENV))
        metrics_port = stack.free_port()  # the "on" worker's /metrics: how many deliveries went on as activities
        on_env = {
            "JIT_NOTIFICATIONS_PATH": str(config),
            SECRET_ENV: "bench-secret-not-a-real-one",
            "JIT_WORKER_METRICS_PORT": str(metrics_port),
        }
        async with stack.dev_server(workdir / "temporal") as server:
            with (
                stack.project_app(server, workdir / "off", "off") as off,
                stack.project_app(server, workdir / "on", "on", on_env) as on,
            ):
                client = await Client.connect(server.address)
                for app in (off, on):
                    await project_lifecycles(app, 2, 1, 1)  # warm
                for r in range(args.rounds):
                    order = {"off": off, "on": on} if r % 2 == 0 else {"on": on, "off": off}
                    for name, app in order.items():
                        log(f"round {r + 1}: notifications {name}")
                        res[name].append(await measure(app, client, args))
                    await quiet(client)
                    for name, p50 in (await one_at_a_time(order, client, args.samples // 2)).items():
                        res[name][-1]["alone_p50_ms"] = p50
                    log(f"  off {res['off'][-1]}\n  on  {res['on'][-1]}")
                res["deliveries"] = delivery_counts(metrics_port)
        res["webhook_events"] = received()
    return res


def summarize(res: dict[str, Any]) -> dict[str, dict[str, float]]:
    # The table's order: back to back, one at a time, then the lifecycles.
    keys = sorted(res["off"][0], key=lambda k: (k.startswith("c"), not k.startswith("latency")))
    return {
        k: {
            "off": mean(r[k] for r in res["off"]),
            "on": mean(r[k] for r in res["on"]),
        }
        for k in keys
    }


def _rows(summary: dict[str, dict[str, float]]) -> list[tuple[str, str, float]]:
    """(measure, table row, on/off ratio read so that higher is better) per measure."""
    out = []
    for k, v in summary.items():
        if k.startswith("c"):
            ratio = v["on"] / v["off"]
            label = f"lifecycles/s, concurrency {k[1:]}"
            out.append((label, f"| {label} | {v['off']:.2f} | {v['on']:.2f} | {ratio:.2f}x |", ratio))
        else:
            ratio = v["off"] / v["on"]  # latency: lower is better, so the ratio reads the same way
            if k.startswith("alone"):
                label = "auto-approved -> credentials, one at a time, p50"
            else:
                label = "auto-approved -> credentials, back to back, " + k.split("_")[1]
            out.append((label, f"| {label} (ms) | {v['off']:.0f} | {v['on']:.0f} | {ratio:.2f}x |", ratio))
    return out


def _verdict(rows: list[tuple[str, str, float]]) -> str:
    under = [label for label, _, ratio in rows if ratio < 0.9]
    if not under:
        return "Every row meets the 0.9x target."
    return f"Under the 0.9x target: {'; '.join(under)}."


def render(res: dict[str, Any]) -> str:
    measured = _rows(summarize(res))
    rows = [row for _, row, _ in measured]
    f = res["facts"]
    return "\n".join(
        [
            SECTION,
            "",
            f"`bench/notifications_bench.py` (part of `make bench`), {res['rounds']} rounds (off/on order flipped each round, each measure from an idle server) on "
            f"{f['nproc']} cores ({f['cpu']}, load average at start {f['load average at start']}): the same worker and API with no notifications file (off) and with "
            "every event of every request sent to the console and to a local webhook receiver, signed (on; "
            "the receiver is a minimal asyncio HTTP server in a process of its own, so that the cores it "
            "shares go to jit-access rather than to a receiver's own overhead). One at a time, the two "
            "copies take turns request by request, so that the machine's drift falls on both alike. "
            f"The receiver took {res['webhook_events']} events; of the {res['deliveries']['sent']:.0f} deliveries "
            f"(console and webhook), {res['deliveries']['deferred']:.0f} went on as activities after their inline "
            "attempt missed. Ratio: on as a fraction of off (higher is better; "
            "the target is >= 0.9x for both).",
            "",
            "| measure | off | on | on / off |",
            "|---|---:|---:|---:|",
            *rows,
            "",
            "A lifecycle here sends three events (filed to the approvers; active, then expired to "
            "the requester), each to both routes. Console and webhook routes get their first attempt "
            "inline: a local activity inside the workflow task that raised the event, so a delivery "
            "that succeeds costs no round trip to Temporal and no workflow task of its own (here "
            "every one does: the receiver answers 204). What remains is the sends themselves, on the "
            "two cores that the dev server, worker, API, receiver and this client share, and the "
            "wait for them inside the workflow task: the answer to filing an auto-approved request "
            'comes after its "active" delivery. Before, each event was an activity plus the workflow '
            "task of its completion: 0.74x back to back (p50), 0.81x one at a time, 0.92x and 0.82x "
            "of the lifecycles at concurrency 8 and 32 in this benchmark's previous full run. The inline "
            "code measured before two changes to this benchmark (the receiver was Python's threading "
            "http.server, and one at a time ran as a phase per copy, not in turns) gave 0.87x for both "
            "latency rows; the margins on latency are thin, within this machine's noise, and a p99 moves "
            "by tens of percent between runs. " + _verdict(measured),
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--render-only", action="store_true", help="re-render from bench/results/notifications.json")
    args = parser.parse_args(argv)
    args.concurrency = [8, 32]
    args.rounds, args.per_loop, args.samples = (1, 1, 10) if args.quick else (4, 3, 60)
    return run_section("notifications", SECTION, args, main_run, render, stack.print_log_tails)


if __name__ == "__main__":
    sys.exit(main())
