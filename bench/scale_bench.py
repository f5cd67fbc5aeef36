"""``make bench`` (part): the shared state in PostgreSQL beside SQLite, and two workers beside one.

    .venv/bin/python bench/scale_bench.py [--quick] [--no-write]

One Temporal dev server and one PostgreSQL (pgserver, over its Unix socket);
three copies of the project, each its own worker + API as ``make run`` starts
them: the SQLite default, ``JIT_DATABASE_URL`` (grant store and audit log in
PostgreSQL), and the PostgreSQL one with a second worker on the same task
queue. Measures introspection (wrk, beside the hello-world ceiling of the same
run) and lifecycle throughput (create -> approve -> active -> expire); writes
the "Beyond one machine" section of docs/benchmarks.md.

Targets (issue 14): introspection with PostgreSQL state >= 0.7x the hello-world
ceiling; lifecycle throughput with PostgreSQL within 0.9x of SQLite.
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import sys
from pathlib import Path
from statistics import mean
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
for p in (str(ROOT), str(BENCH)):
    if p not in sys.path:
        sys.path.insert(0, p)

import facts  # noqa: E402
import stack  # noqa: E402
from doc import run_section  # noqa: E402
from run import introspection, log, project_lifecycles  # noqa: E402

SECTION = "## Beyond one machine"


async def lifecycles(app: stack.App, args: argparse.Namespace) -> float:
    await project_lifecycles(app, 2, 1, 1)  # warm
    return float((await project_lifecycles(app, 32, args.per_loop, 2))["per_s"])


async def introspections(app: stack.App, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    intro = await introspection(app, workdir, args.wrk_seconds, args.connections)
    return {
        "per_s": intro["project"]["per_s"],
        "p99_ms": intro["project"]["p99_ms"],
        "hello_per_s": intro["hello"]["per_s"],
        "breakdown_us": intro["breakdown"],
    }


def shared_secrets() -> dict[str, str]:
    """What processes with data dirs of their own must share: the keys, as settings (no shared disk)."""
    from core.keys import SigningKey, generate

    return {
        "JIT_SIGNING_KEY_PEM": SigningKey.of(generate("RS256")).pem().decode(),
        "JIT_CODEC_KEYS": f"k1:{base64.urlsafe_b64encode(os.urandom(32)).decode()}",
        "JIT_PG_PASSWORD_SECRET": base64.urlsafe_b64encode(os.urandom(32)).decode(),
    }


async def main_run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    import pgserver

    res: dict[str, Any] = {"facts": facts.machine()}
    pg = pgserver.get_server(workdir / "pg", cleanup_mode="delete")
    try:
        dsn = pg.get_uri()
        env = {"JIT_DATABASE_URL": dsn, **shared_secrets()}
        async with stack.dev_server(workdir / "temporal") as server:
            # Both copies up at once, measured in turns (SQLite, PostgreSQL, PostgreSQL, SQLite) so
            # that drift hits both alike; each process of the PostgreSQL one has its own data dir.
            with (
                stack.project_app(server, workdir / "sqlite", "sqlite") as lite,
                stack.project_app(server, workdir / "pg", "pg", env) as pg_app,
            ):
                # The bench's own client decodes what the API and worker encrypt: the same keys.
                pg_app.settings = pg_app.settings.model_copy(
                    update={"codec_keys": env["JIT_CODEC_KEYS"], "database_url": dsn}
                )
                apps = {"sqlite": lite, "postgres": pg_app}
                for name in ("sqlite", "postgres", "postgres", "sqlite"):
                    log(f"{name}: lifecycles, introspection")
                    run = res.setdefault(name, {"lifecycles_per_s": [], "introspection": []})
                    run["lifecycles_per_s"].append(await lifecycles(apps[name], args))
                    run["introspection"].append(await introspections(apps[name], workdir, args))
                    log(
                        f"  {run['lifecycles_per_s'][-1]:.2f}/s, {run['introspection'][-1]['per_s']:.0f} introspections/s"
                    )
                log("postgres, two workers")
                second = stack.spawn(
                    [sys.executable, str(ROOT / "worker.py")],
                    workdir / "worker-2.log",
                    {**stack.app_env(pg_app.settings), **env, "JIT_DATA_DIR": str(workdir / "worker-2-data")},
                )
                try:
                    res["postgres_2_workers"] = {"lifecycles_per_s": [await lifecycles(pg_app, args)]}
                finally:
                    stack.stop(second)
    finally:
        pg.cleanup()
    return res


def _step(summary: dict[str, Any], name: str) -> str:
    return next((f"{us:.0f}" for step, us in summary.get("breakdown_us", []) if step.startswith(name)), "?")


def _summary(run: dict[str, Any]) -> dict[str, Any]:
    intro = run.get("introspection", [])
    ratios = [i["per_s"] / i["hello_per_s"] for i in intro]
    return {
        "lifecycles": mean(run["lifecycles_per_s"]),
        "per_s": mean(i["per_s"] for i in intro) if intro else None,
        "p99": mean(i["p99_ms"] for i in intro) if intro else None,
        "ratio": mean(ratios) if ratios else None,
        "range": f"{min(ratios):.2f}-{max(ratios):.2f}" if ratios else "",
        "breakdown_us": intro[0]["breakdown_us"] if intro else [],
    }


def render(res: dict[str, Any]) -> str:
    f = res["facts"]
    lite, pg, two = (_summary(res[k]) for k in ("sqlite", "postgres", "postgres_2_workers"))
    rows = [
        "| state | introspections/s | p99 (ms) | of hello-world (range) | lifecycles/s (c=32) | of SQLite |",
        "|---|---:|---:|---:|---:|---:|",
        f"| SQLite files (default) | {lite['per_s']:.0f} | {lite['p99']:.1f} | {lite['ratio']:.2f}x "
        f"({lite['range']}) | {lite['lifecycles']:.2f} | 1.00x |",
        f"| PostgreSQL (`JIT_DATABASE_URL`) | {pg['per_s']:.0f} | {pg['p99']:.1f} | {pg['ratio']:.2f}x "
        f"({pg['range']}) | {pg['lifecycles']:.2f} | {pg['lifecycles'] / lite['lifecycles']:.2f}x |",
        f"| PostgreSQL, 2 workers | | | | {two['lifecycles']:.2f} | {two['lifecycles'] / lite['lifecycles']:.2f}x |",
    ]
    return "\n".join(
        [
            SECTION,
            "",
            f"`bench/scale_bench.py` (part of `make bench`) on {f['nproc']} cores ({f['cpu']}, load average at "
            f"start {f['load average at start']}): one Temporal dev server, one PostgreSQL (pgserver, Unix "
            "socket), two copies of the worker and API as `make run` starts them, one with the grant store and "
            "audit log in SQLite files, one in PostgreSQL (each of its processes with a data dir of its own, "
            "the keys as settings), measured in turns (SQLite, PostgreSQL, PostgreSQL, SQLite; means of two); "
            "then a second worker on the PostgreSQL one's task queue. Introspection is wrk against "
            "`POST /v1/introspect` (one live token) beside a hello-world FastAPI app measured right after it; "
            "lifecycles are create -> approve -> active -> expire at concurrency 32. Targets: introspection "
            "with PostgreSQL state >= 0.7x hello-world, lifecycles within 0.9x of SQLite.",
            "",
            *rows,
            "",
            "Introspection answers from a grant row read within `JIT_INTROSPECTION_CACHE_S` (0.5 s; "
            "api/recent_grants.py), so a resource server repeating a token costs PostgreSQL one read per "
            "half second, not one per call; uncached, a PostgreSQL lookup costs "
            f"{_step(pg, 'grant store')} µs against SQLite's {_step(lite, 'grant store')} µs (in-process, "
            "one thread). A revoke made through another API replica is seen within that half second (through "
            "this one, at once; an expiry, always at once). The hello-world ceiling itself moves by 10-15 % "
            "between measurements on this machine, and the ratios with it (the range column).",
            "",
            "A second worker on this 2-core machine adds processes, not cores: the dev server, the API and "
            "the bench client share the same two. The row shows that two workers on one task queue split the "
            "work without loss (tests/test_scale_out.py proves the correctness, with SIGKILLs); the "
            "throughput gain needs cores of its own.",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--render-only", action="store_true", help="re-render from bench/results/scale.json")
    args = parser.parse_args(argv)
    args.per_loop, args.wrk_seconds, args.connections = (1, 2, 16) if args.quick else (3, 8, 32)
    if shutil.which("wrk") is None and not args.render_only:
        print("wrk is missing: apt-get install -y wrk (make bench does)", file=sys.stderr)
        return 1
    return run_section("scale", SECTION, args, main_run, render, stack.print_log_tails)


if __name__ == "__main__":
    sys.exit(main())
