"""docs/benchmarks.md is written in sections, one per script: each replaces only its own."""

from __future__ import annotations

import math
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs/benchmarks.md"


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
