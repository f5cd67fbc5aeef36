"""docs/benchmarks.md is written in sections, one per script: each replaces only its own."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs/benchmarks.md"
RESULTS = ROOT / "bench/results"


def write_section(heading: str, text: str) -> None:
    """Replace the section that starts with ``heading`` (up to the next ``## ``), or append it."""
    old = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    start = old.find(heading + "\n")
    if start < 0:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        end = old.find("\n## ", start + len(heading))
        new = old[:start] + text + ("\n" + old[end + 1 :] if end >= 0 else "")
    DOC.write_text(new.rstrip("\n") + "\n")


def pct(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of ``values``; NaN if empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def run_section(
    name: str,
    heading: str,
    args: argparse.Namespace,
    measure: Callable[[argparse.Namespace, Path], Awaitable[dict[str, Any]]],
    render: Callable[[dict[str, Any]], str],
    on_failure: Callable[[Path], None],
) -> int:
    """One benchmark script's run: measure in a temporary dir, keep the results as
    ``bench/results/<name>.json``, print the section and write it (``--no-write``: print only,
    keep nothing; ``--render-only``: from the kept results)."""
    results = RESULTS / f"{name}.json"
    if getattr(args, "render_only", False):
        write_section(heading, render(json.loads(results.read_text())))
        return 0
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"jit-bench-{name}-") as tmp:
        try:
            res = asyncio.run(measure(args, Path(tmp)))
        except BaseException:
            on_failure(Path(tmp))  # the processes' logs, to see why
            raise
    res["elapsed_s"] = time.monotonic() - started
    text = render(res)
    print(text)
    if not args.no_write:  # a trial run leaves the kept results and the doc as they were
        RESULTS.mkdir(exist_ok=True)
        results.write_text(json.dumps(res, indent=1, default=str))
        write_section(heading, text)
        print("written to docs/benchmarks.md")
    return 0
