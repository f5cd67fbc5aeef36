"""One chaos run: the stack up, the workload and the fault injector together, then the verdicts.

    results = await run_chaos(workdir, ChaosOptions(requests=12, window_s=25))

The pieces: ``chaos_stack.py`` (processes, SIGKILL, restart, outages),
``chaos_workload.py`` (requests through the REST API, racing their expiry;
the fault injector), ``chaos_checks.py`` (verdicts, results dict, table).
tests/test_chaos.py runs a bounded one in ``make test``; bench/chaos.py a long
one (``make chaos``).
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.chaos_checks import judge, summarize
from tests.chaos_stack import ChaosStack
from tests.chaos_workload import Workload, WorkloadConfig, inject_faults


@dataclass
class ChaosOptions:
    requests: int = 12
    window_s: float = 25.0  # requests start spread over this many seconds
    durations_s: tuple[int, int] = (3, 5)  # each grant's length, drawn in this range
    seed: int = 1
    # Faults, in this order, round and round; each worker restart takes the next cache size. The API
    # (quickest back) comes before the server, so the server's kill still finds grants live on a slow run.
    plan: tuple[str, ...] = ("worker", "api", "temporal", "worker")
    cache_sizes: tuple[int, ...] = (3, 1000)
    first_cache_size: int = 3  # the first worker: the smallest cache allowed, most queries replay
    gap_s: tuple[float, float] = (4.0, 7.0)
    down_s: tuple[float, float] = (1.0, 2.5)
    sticky_timeout_s: float = 1.0
    settle_s: float = 120.0  # how long a request may take to end past its expiry before it is reported stuck
    # Also terminate/cancel some workflows through Temporal, as from its UI: each grant must still be
    # revoked (by the reconciler) within settle_s.
    outside: bool = False


async def run_chaos(
    workdir: Path, options: ChaosOptions, log: Callable[[str], None] = lambda _: None
) -> dict[str, Any]:
    """Start the stack, run the workload under faults, stop faulting, judge; the stack is stopped after."""
    stack = ChaosStack(workdir, cache_size=options.first_cache_size, sticky_timeout_s=options.sticky_timeout_s)
    started = time.monotonic()
    try:
        await stack.start()
        log(f"stack up: temporal {stack.settings.temporal_address}, API {stack.api_url}")
        workload = Workload(
            stack,
            WorkloadConfig(
                requests=options.requests,
                window_s=options.window_s,
                durations_s=options.durations_s,
                seed=options.seed,
                settle_s=options.settle_s,
                outside=options.outside,
            ),
            run_id=uuid.uuid4().hex[:8],
        )
        stop, round_done = asyncio.Event(), asyncio.Event()
        faults = asyncio.create_task(
            inject_faults(
                stack,
                stop,
                rng=random.Random(options.seed + 1),
                plan=options.plan,
                cache_sizes=options.cache_sizes,
                gap_s=options.gap_s,
                down_s=options.down_s,
                on_event=log,
                round_done=round_done,
            )
        )
        try:
            traces = await workload.run()
            if not round_done.is_set():
                log("workload done before each kind of process was killed; killing the rest")
                await asyncio.wait_for(round_done.wait(), options.settle_s)
        finally:
            stop.set()
            await faults  # a fault in progress finishes its restart first
            await workload.close()
        log("workload done; judging")
        verdicts = await judge(stack, traces)
        results = summarize(stack, verdicts, time.monotonic() - started)
        results["options"] = {k: v for k, v in vars(options).items()}
        return results
    except BaseException:
        log(stack.log_tails())
        raise
    finally:
        await stack.close()
