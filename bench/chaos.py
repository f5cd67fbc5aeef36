"""Chaos, long: grants expiring, read, approved, extended and revoked while the Temporal dev server, the
worker and the API are SIGKILLed and restarted, for minutes; then every request judged.

    make chaos                                  (~10 min: 150 requests over 8 min)
    .venv/bin/python bench/chaos.py --requests 40 --minutes 2 --seed 7

The harness is tests/chaos_support.py (tests/test_chaos.py runs a bounded one
in ``make test``); tests/chaos_checks.py says what is checked. Prints the
results as a markdown table (for docs/reliability.md) and writes them, with
every problem found, to bench/results/chaos.json. Loopback only; the processes'
logs stay in a temporary directory printed at the start (kept with --keep).
Exit status 1 when any check failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.chaos_checks import markdown  # noqa: E402
from tests.chaos_support import ChaosOptions, run_chaos  # noqa: E402

RESULTS = ROOT / "bench/results/chaos.json"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=150)
    p.add_argument("--minutes", type=float, default=8.0, help="requests start spread over this long")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--min-duration", type=int, default=3, help="shortest grant, seconds")
    p.add_argument("--max-duration", type=int, default=8, help="longest grant, seconds")
    p.add_argument("--gap", type=float, nargs=2, default=(4.0, 9.0), help="seconds between faults (min max)")
    p.add_argument("--down", type=float, nargs=2, default=(0.5, 4.0), help="seconds a killed process stays down")
    p.add_argument("--no-outside", action="store_true", help="no workflows terminated/cancelled through Temporal")
    p.add_argument(
        "--settle", type=float, default=180.0, help="seconds a grant may take to end before it counts as stuck"
    )
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--keep", action="store_true", help="keep the processes' logs and data")
    return p.parse_args()


async def main() -> int:
    args = parse_args()
    options = ChaosOptions(
        requests=args.requests,
        window_s=args.minutes * 60,
        durations_s=(args.min_duration, args.max_duration),
        seed=args.seed,
        gap_s=tuple(args.gap),
        down_s=tuple(args.down),
        outside=not args.no_outside,
        settle_s=args.settle,
    )
    workdir = Path(tempfile.mkdtemp(prefix="jit-chaos-"))
    print(f"chaos: {args.requests} requests over {args.minutes:g} min, logs in {workdir}", flush=True)
    started = time.monotonic()

    def log(line: str) -> None:
        print(f"[{time.monotonic() - started:7.1f}s] {line}", flush=True)

    try:
        results = await run_chaos(workdir, options, log=log)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, default=str) + "\n")
    print()
    print(markdown(results))
    print(f"\nCommand: .venv/bin/python bench/chaos.py --requests {args.requests} --minutes {args.minutes:g} "
          f"--seed {args.seed}   (results in {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out})")  # fmt: skip
    for problem in results["problems"][:40]:
        print(f"  FAIL {problem}")
    if len(results["problems"]) > 40:
        print(f"  ... and {len(results['problems']) - 40} more in {args.out}")
    return 0 if results["passed"] else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
