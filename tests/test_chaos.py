"""Chaos, bounded: the Temporal dev server, the worker and the API SIGKILLed and restarted while grants
expire and are read, approved, extended and revoked; every request must still end right, on time, once,
and every caller must have been told the truth.

About a minute and a half on 2 cores: 12 requests of 3-5 s grants over ~25 s, a fault every 4-7 s
(worker, API, server, worker, ...; each kind is killed at least once, however slow the machine), the
worker caching 3 (the least allowed) or 1000 workflows, and some workflows terminated or cancelled
through Temporal itself, as from its UI (the reconciler, every 5 s here, must revoke what a termination
strands). bench/chaos.py (``make chaos``) runs the same harness for longer; tests/chaos_checks.py says
what is checked.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.chaos_checks import markdown
from tests.chaos_support import ChaosOptions, run_chaos

pytestmark = pytest.mark.chaos


async def test_grants_end_on_time_and_callers_are_told_the_truth_under_sigkill(tmp_path: Path) -> None:
    lines: list[str] = []
    results = await run_chaos(tmp_path / "chaos", ChaosOptions(settle_s=45.0, outside=True), log=lines.append)
    report = f"{markdown(results)}\n\n" + "\n".join(lines) + "\n\n" + json.dumps(results["problems"], indent=1)
    # The run injected what it says it did: each kind of process died and came back.
    assert all(n >= 1 for n in results["kills"].values()), report
    assert 3 in results["worker_cache_sizes"], report
    assert results["problems"] == [], report
    ended, activated = results["grants_ended"]
    assert activated >= results["requests"] // 2 and ended == activated, report
    assert results["duplicates"] == 0 and results["late_beyond_downtime"] == 0, report
    revoked, ended_outside = results["ended_outside_api"]
    assert ended_outside >= 1 and revoked == ended_outside, report
    told, judged = results["callers_told_truth"]
    assert judged > 0 and told == judged, report
