"""Grouped bar charts as SVG, turned into PNG by Debian's chromium (headless), no plotting library.

chromium is already what ``make test`` installs for the Temporal UI test. Without it,
``render`` returns False and the page says the plots were not drawn.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from html import escape
from pathlib import Path

COLORS = ["#3b6ea8", "#b0b0b0", "#d9822b", "#6a9f58"]
W, H = 640, 340


def bar_svg(title: str, groups: list[str], series: list[str], values: list[list[float]], unit: str) -> str:
    """``values[s][g]``: series ``s`` in group ``g``; each bar labelled with its value."""
    left, right, top, bottom = 64, 16, 44, 64
    plot_w, plot_h = W - left - right, H - top - bottom
    vmax = max([v for row in values for v in row] + [1e-9]) * 1.15
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="DejaVu Sans, sans-serif">',
        f'<rect width="{W}" height="{H}" fill="white"/>',
        f'<text x="{W / 2}" y="24" font-size="15" text-anchor="middle" font-weight="bold">{escape(title)}</text>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#333"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#333"/>',
        f'<text x="16" y="{top + plot_h / 2}" font-size="12" text-anchor="middle" '
        f'transform="rotate(-90 16 {top + plot_h / 2})">{escape(unit)}</text>',
    ]
    for i in range(5):
        v = vmax * i / 4
        y = top + plot_h - plot_h * i / 4
        out.append(f'<line x1="{left - 4}" y1="{y}" x2="{left + plot_w}" y2="{y}" stroke="#eee"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4}" font-size="11" text-anchor="end">{_fmt(v)}</text>')
    group_w = plot_w / max(1, len(groups))
    bar_w = group_w * 0.8 / max(1, len(series))
    for g, name in enumerate(groups):
        x0 = left + g * group_w + group_w * 0.1
        for s in range(len(series)):
            v = values[s][g]
            h = plot_h * v / vmax
            x, y = x0 + s * bar_w, top + plot_h - h
            out.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w - 2:.1f}" height="{h:.1f}" fill="{COLORS[s % 4]}"/>'
            )
            out.append(
                f'<text x="{x + bar_w / 2 - 1:.1f}" y="{y - 4:.1f}" font-size="11" text-anchor="middle">{_fmt(v)}</text>'
            )
        out.append(
            f'<text x="{left + g * group_w + group_w / 2:.1f}" y="{top + plot_h + 18}" font-size="12" '
            f'text-anchor="middle">{escape(name)}</text>'
        )
    lx = left
    for s, name in enumerate(series):
        out.append(f'<rect x="{lx}" y="{H - 22}" width="12" height="12" fill="{COLORS[s % 4]}"/>')
        out.append(f'<text x="{lx + 16}" y="{H - 12}" font-size="12">{escape(name)}</text>')
        lx += 24 + 7 * len(name)
    out.append("</svg>")
    return "\n".join(out)


def _fmt(v: float) -> str:
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def render(svg: str, png: Path) -> bool:
    """SVG -> PNG with headless chromium; False if there is no chromium or it failed."""
    exe = chromium()
    if exe is None:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "plot.html"
        page.write_text(f'<html><body style="margin:0">{svg}</body></html>')
        try:
            subprocess.run(  # noqa: S603 - a fixed argument list
                [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                 f"--user-data-dir={tmp}/profile", f"--window-size={W},{H}",
                 f"--screenshot={png}", page.as_uri()],
                check=True, capture_output=True, timeout=60,
            )  # fmt: skip
        except (subprocess.SubprocessError, OSError):
            return False
    return png.exists()
