"""Grouped bar charts and line charts as SVG, turned into PNG by Debian's chromium (headless), no plotting library.

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
    out = _frame(title, unit, left, top, plot_w, plot_h)
    for i in range(5):
        out.append(f'<text x="{left - 6}" y="{top + plot_h - plot_h * i / 4 + 4}" font-size="11" '
                   f'text-anchor="end">{_fmt(vmax * i / 4)}</text>')  # fmt: skip
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
    out += _legend(series)
    out.append("</svg>")
    return "\n".join(out)


def line_svg(title: str, series: list[str], points: list[list[tuple[float, float]]], x_unit: str, y_unit: str) -> str:
    """``points[s]``: the (x, y) of series ``s``, joined by a line, each point marked."""
    left, right, top, bottom = 64, 16, 44, 78
    plot_w, plot_h = W - left - right, H - top - bottom
    xs = [x for row in points for x, _ in row] or [0.0, 1.0]
    ys = [y for row in points for _, y in row] or [1.0]
    xmin, xmax = min(xs + [0.0]), max(xs) * 1.02 or 1.0
    ymax = max(ys + [1e-9]) * 1.15
    sx = lambda x: left + plot_w * (x - xmin) / ((xmax - xmin) or 1.0)  # noqa: E731
    sy = lambda y: top + plot_h - plot_h * y / ymax  # noqa: E731
    out = _frame(title, y_unit, left, top, plot_w, plot_h)
    for i in range(5):
        out.append(f'<text x="{left - 6}" y="{top + plot_h - plot_h * i / 4 + 4}" font-size="11" '
                   f'text-anchor="end">{_fmt(ymax * i / 4)}</text>')  # fmt: skip
        x = xmin + (xmax - xmin) * i / 4
        out.append(
            f'<text x="{sx(x):.1f}" y="{top + plot_h + 16}" font-size="11" text-anchor="middle">{_fmt(x)}</text>'
        )
    out.append(f'<text x="{left + plot_w / 2}" y="{top + plot_h + 34}" font-size="12" '
               f'text-anchor="middle">{escape(x_unit)}</text>')  # fmt: skip
    for s, row in enumerate(points):
        color = COLORS[s % len(COLORS)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in row)
        out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        out += [f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{color}"/>' for x, y in row]
    out += _legend(series)
    out.append("</svg>")
    return "\n".join(out)


def _frame(title: str, y_unit: str, left: int, top: int, plot_w: int, plot_h: int) -> list[str]:
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="DejaVu Sans, sans-serif">',
        f'<rect width="{W}" height="{H}" fill="white"/>',
        f'<text x="{W / 2}" y="24" font-size="15" text-anchor="middle" font-weight="bold">{escape(title)}</text>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#333"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#333"/>',
        f'<text x="16" y="{top + plot_h / 2}" font-size="12" text-anchor="middle" '
        f'transform="rotate(-90 16 {top + plot_h / 2})">{escape(y_unit)}</text>',
    ]
    for i in range(5):
        y = top + plot_h - plot_h * i / 4
        out.append(f'<line x1="{left - 4}" y1="{y}" x2="{left + plot_w}" y2="{y}" stroke="#eee"/>')
    return out


def _legend(series: list[str]) -> list[str]:
    out, lx = [], 64
    for s, name in enumerate(series):
        out.append(f'<rect x="{lx}" y="{H - 22}" width="12" height="12" fill="{COLORS[s % len(COLORS)]}"/>')
        out.append(f'<text x="{lx + 16}" y="{H - 12}" font-size="12">{escape(name)}</text>')
        lx += 24 + 7 * len(name)
    return out


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
