"""The figures of bench/revocation.py: statistics, plots and the "Revocation at scale" section."""

from __future__ import annotations

from typing import Any

import plots
from doc import ROOT, pct, write_section

SECTION = "## Revocation at scale"
P99_TARGET_S = 1.0
CRASH_TARGET_S = 12.0  # the outage (10 s) plus 2 s
BURST_TARGET = 1.2  # × the baseline's drain time
RSS_TARGET_MIB = 300e6 / 2**20  # 300 MB
LAG_BINS = [(0, 0.1), (0.1, 0.25), (0.25, 0.5), (0.5, 1), (1, 2), (2, 5), (5, 10), (10, 1e9)]
GROWTH_AT = [100, 500, 1000, 2000, 3000, 4000, 5000]


def lag_stats(r: dict[str, Any]) -> dict[str, float]:
    lags = [x["lag"] for x in r["lags"]]
    return {"p50": pct(lags, 0.5), "p99": pct(lags, 0.99), "max": max(lags, default=float("nan"))}


def drain_s(r: dict[str, Any]) -> float:
    """From the first expiry to the last revocation."""
    ends = [x["expires"] + x["lag"] for x in r["lags"]]
    return max(ends) - min(x["expires"] for x in r["lags"]) if ends else float("nan")


def one_line(r: dict[str, Any]) -> str:
    s = lag_stats(r)
    return (
        f"{r['revoked']}/{r['n']} revoked, lag p50 {s['p50']:.2f}s p99 {s['p99']:.2f}s max {s['max']:.2f}s; "
        f"created {r['create_per_s']:.1f}/s; worker RSS {r['rss_idle_mib']:.0f} -> {r['rss_active_mib']:.0f} MiB; "
        f"CPU ms per expiry: worker {r['cpu_ms']['worker']:.1f}, server {r['cpu_ms']['server']:.1f}"
    )


def crash_split(r: dict[str, Any]) -> dict[str, Any]:
    """Grants due while the worker was down (or just before: their revocation may have been in flight)
    against the rest."""
    killed, restarted = r["events"]["killed"], r["events"]["restarted"]
    inside = [x["lag"] for x in r["lags"] if killed - 1 <= x["expires"] <= restarted]
    outside = [x["lag"] for x in r["lags"] if not killed - 1 <= x["expires"] <= restarted]
    after = [x["expires"] + x["lag"] - restarted for x in r["lags"] if x["expires"] <= restarted]
    return {
        "outage_s": restarted - killed,
        "inside": len(inside),
        "inside_max": max(inside, default=float("nan")),
        "outside_p99": pct(outside, 0.99),
        "outside_max": max(outside, default=float("nan")),
        "caught_up_s": max(after, default=float("nan")),  # from the restart until the backlog was revoked
        "max": lag_stats(r)["max"],
    }


def rss_by_active(r: dict[str, Any], process: str) -> list[tuple[float, float]]:
    """(active grants, RSS MiB) while the grants were being created: one point per ~N/25 grants."""
    rows = [s for s in r["samples"] if s["t"] < r["first_expiry"] and s.get(f"{process}_rss_mib")]
    step = max(1, r["n"] // 25)
    points: dict[int, float] = {}
    for s in rows:
        points[int(s["live"]) // step * step] = s[f"{process}_rss_mib"]
    return sorted((float(k), v) for k, v in points.items() if k > 0)


def lag_p99_by_active(r: dict[str, Any], width: int) -> list[tuple[float, float]]:
    """Lag p99 of the grants that expired while about ``active`` were still live (all were created
    before the first expiry, so the k-th to expire leaves n − k)."""
    ordered = sorted(r["lags"], key=lambda x: x["expires"])
    n = len(ordered)
    out = []
    for hi in range(n, 0, -width):
        chunk = [x["lag"] for i, x in enumerate(ordered) if hi - width < n - i <= hi]
        out.append((float(hi), pct(chunk, 0.99)))
    return sorted(out)


def near(points: list[tuple[float, float]], x: float) -> float:
    if not points:
        return float("nan")
    return min(points, key=lambda p: abs(p[0] - x))[1]


def create_p50_near(r: dict[str, Any], active: int, width: int = 100) -> float:
    return pct([ms for a, ms in r["create_ms"] if active - width <= a < active + width], 0.5)


def _window(spread_s: float) -> str:
    if spread_s >= 600:
        return ""
    return (
        f" The issue asks for expiries over 10 minutes; they fall over {span(spread_s)} here, "
        f"{600 / spread_s:.0f}× the issue's expiry rate, which keeps `make bench` near 40 minutes instead "
        "of over an hour."
    )


def _resumed(cfg: dict[str, Any]) -> list[str]:
    if not cfg.get("resume"):
        return []
    if cfg.get("resume_note"):  # what the person who resumed it wrote down
        return [cfg["resume_note"], ""]
    return [
        "This page's run was resumed (`--resume`): the project's spread runs are "
        "from the run started at the time above, which then stopped on a benchmark bug in the baseline's "
        "spread run (5,000 concurrent waits for workflow results hit the server's poller limit; fixed); the "
        "baseline's spread run and the crash, burst and worker-settings runs are from the resumed run, on a "
        "fresh dev server."
        + ("" if cfg.get("baseline_grants") else " The baseline's spread run is missing here; `make bench` runs it."),
        "",
    ]


def span(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"


def verdict(ok: bool, miss: str) -> str:
    return "met" if ok else f"missed: {miss}"


def summary(res: dict[str, Any]) -> str:
    out = [""]
    for r in res["spread"]:
        out.append(f"spread {r['run']} N={r['n']}: {one_line(r)}")
    c = crash_split(res["crash"])
    out.append(f"crash: max lag {c['max']:.2f}s (target <= {CRASH_TARGET_S:.0f}s), others p99 {c['outside_p99']:.2f}s")
    p, b = (drain_s(r) for r in res["burst"])
    out.append(f"burst {res['burst'][0]['n']}: project drains in {p:.2f}s, baseline {b:.2f}s, ratio {p / b:.2f}x")
    for r in res.get("settings", []):
        out.append(f"burst with {r['run']}: drains in {drain_s(r):.2f}s")
    return "\n".join(out)


def _runs_table(res: dict[str, Any]) -> list[str]:
    L = [
        "| run | N | created /s | live after create | revoked | lag p50 s | lag p99 s | lag max s "
        "| worker RSS idle → with N MiB | server RSS with N MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res["spread"]:
        s = lag_stats(r)
        server = max((x.get("server_rss_mib", 0) for x in r["samples"] if x["t"] < r["first_expiry"]), default=0)
        L.append(
            f"| {r['run']} | {r['n']} | {r['create_per_s']:.1f} | {r['live_after_create']} | {r['revoked']} "
            f"| {s['p50']:.2f} | {s['p99']:.2f} | {s['max']:.2f} | {r['rss_idle_mib']:.0f} → {r['rss_active_mib']:.0f} "
            f"| {server:.0f} |"
        )
    return L


def render(res: dict[str, Any], plots_ok: dict[str, bool]) -> str:
    cfg = res["config"]
    project = [r for r in res["spread"] if r["run"] == "project"]
    base = [r for r in res["spread"] if r["run"] == "baseline"]
    big = max(project, key=lambda r: r["n"])
    c = crash_split(res["crash"])
    pb, bb = res["burst"]
    ratio = drain_s(pb) / drain_s(bb)
    L = [SECTION, ""]
    L += (
        [
            f"Written by `make bench` (`.venv/bin/python bench/revocation.py`) on {res['started']}, in "
            f"{res['elapsed_s'] / 60:.1f} min, on one fresh dev server (as for the service benchmarks). Grants are "
            f"auto-approved requests (`{'k8s:prod/logs'}`) created through the REST API, {32} at a time, "
            "with durations chosen so that their expiries fall where the run wants them once all are created. "
            "Lag = the grant store's `revoked_at` − `expires_at` (core/grants.py; from then on introspection "
            "answers inactive), read back for every grant. The baseline (bench/baseline.py) runs the same "
            "schedule: its revoke activity returns its own lag. RSS is sampled every second from "
            "`/proc/<pid>/status`." + _window(cfg["spread"]),
            "",
        ]
        + _resumed(cfg)
        + [
            "Targets at a glance:",
            "",
        ]
    )
    for r in project:
        s = lag_stats(r)
        L.append(
            f"- revocation lag p99 with {r['n']:,} grants, expiries over {span(r['spread_s'])} "
            f"≤ {P99_TARGET_S:.0f} s: {s['p99']:.2f} s ({verdict(s['p99'] <= P99_TARGET_S, 'over the target')})"
        )
    over = c["max"] - CRASH_TARGET_S
    L.append(
        f"- worker SIGKILLed for {cfg['crash_for']:.0f} s during the grants, max lag ≤ {CRASH_TARGET_S:.0f} s: "
        f"{c['max']:.2f} s ({verdict(over <= 0, f'by {over:.2f} s')})"
    )
    L.append(
        f"- {pb['n']} grants expiring in the same second, drain time ≤ {BURST_TARGET}× the baseline's: "
        f"{ratio:.2f}× ({verdict(ratio <= BURST_TARGET, f'by {ratio - BURST_TARGET:.2f}×')})"
    )
    L.append(
        f"- worker memory with {big['n']:,} active grants ≤ 300 MB ({RSS_TARGET_MIB:.0f} MiB): "
        f"{big['rss_active_mib']:.0f} MiB, peak {big['rss_peak_mib']:.0f} MiB "
        f"({verdict(big['rss_peak_mib'] <= RSS_TARGET_MIB, 'over the target')})"
    )
    L += ["", "Machine:", ""] + [f"- {k}: {v}" for k, v in res["facts"].items()]
    L += ["", f"### N grants active, expiries spread over {span(cfg['spread'])}", ""]
    L += _runs_table(res)
    L += [""]
    if plots_ok.get("histogram"):
        L += ["![Revocation lag histogram](bench-revocation-histogram.png)", ""]
    L += ["### How the figures grow with the number of active grants", ""]
    L += [
        f"From the {big['n']:,}-grant runs: worker RSS while the grants were being created (so at each count "
        "the workflows of all live grants are in the worker), the API's create latency at that count, and the "
        "lag of the grants that expired while that many were still live.",
        "",
        "| active grants | worker RSS MiB | server RSS MiB | create p50 ms | lag p99 s |"
        + (" baseline worker RSS MiB | baseline lag p99 s |" if base else ""),
        "|---:|---:|---:|---:|---:|" + ("---:|---:|" if base else ""),
    ]
    width = max(100, big["n"] // 20)
    bbig = max(base, key=lambda r: r["n"]) if base else None
    for a in [x for x in GROWTH_AT if x <= big["n"]]:
        row = (
            f"| {a:,} | {near(rss_by_active(big, 'worker'), a):.0f} | {near(rss_by_active(big, 'server'), a):.0f} "
            f"| {create_p50_near(big, a):.0f} | {near(lag_p99_by_active(big, width), a):.2f} |"
        )
        if bbig:
            row += f" {near(rss_by_active(bbig, 'worker'), a):.0f} | {near(lag_p99_by_active(bbig, width), a):.2f} |"
        L.append(row)
    L.append("")
    for name in ("growth-rss", "growth-lag"):
        if plots_ok.get(name):
            L += [f"![{name}](bench-revocation-{name}.png)", ""]
    cr = res["crash"]
    L += [
        "### Worker killed during the grants",
        "",
        f"{cr['n']} grants, expiries over {cr['spread_s']:.0f} s; {cfg['crash_at']:.0f} s after the first expiry "
        f"the worker gets SIGKILL (no graceful shutdown: its sticky task queue is left behind, in-flight "
        f"activities are lost) and is started again {c['outage_s']:.1f} s later.",
        "",
        "| grants | due in the outage | their max lag s | caught up after restart s | others p99 s | others max s "
        "| max lag s |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {cr['revoked']}/{cr['n']} | {c['inside']} | {c['inside_max']:.2f} | {c['caught_up_s']:.2f} "
        f"| {c['outside_p99']:.2f} | {c['outside_max']:.2f} | {c['max']:.2f} |",
        "",
    ]
    if plots_ok.get("crash"):
        L += ["![Revocation lag around a worker crash](bench-revocation-crash.png)", ""]
    L += [
        "### Burst: grants expiring in the same second",
        "",
        "| run | N | drain s (first expiry → last revoked) | lag p50 s | lag p99 s |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in res["burst"]:
        s = lag_stats(r)
        L.append(f"| {r['run']} | {r['n']} | {drain_s(r):.2f} | {s['p50']:.2f} | {s['p99']:.2f} |")
    L += ["", f"Ratio: **{ratio:.2f}×** the baseline's drain time (target ≤ {BURST_TARGET}×).", ""]
    L += _settings_section(res)
    L += ["Command: `.venv/bin/python bench/revocation.py` (part of `make bench`); `--quick` for a smoke run.", ""]
    return "\n".join(L)


def _settings_section(res: dict[str, Any]) -> list[str]:
    """Each worker default beside one alternative, on the same burst."""
    trials = res.get("settings") or []
    if not trials:
        return []
    rows = [{**res["burst"][0], "run": "the defaults (`worker.py`)"}] + trials
    L = [
        "### Worker settings",
        "",
        f"The burst of {rows[0]['n']} again, once per alternative to a default of `worker.py` "
        "(core/settings.py, `JIT_WORKER_*`), everything else as above. Defaults: every module passed through "
        "the sandbox, the SDK's sticky queue timeout (10 s), a workflow cache of 1,000.",
        "",
        "| worker | created /s | drain s | lag p99 s | worker CPU ms / expiry | server CPU ms / expiry "
        "| worker RSS idle → with N MiB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        s = lag_stats(r)
        L.append(
            f"| {r['run']} | {r['create_per_s']:.1f} | {drain_s(r):.2f} | {s['p99']:.2f} "
            f"| {r['cpu_ms']['worker']:.1f} | {r['cpu_ms']['server']:.1f} "
            f"| {r['rss_idle_mib']:.0f} → {r['rss_active_mib']:.0f} |"
        )
    return L + [""]


def draw(res: dict[str, Any]) -> dict[str, bool]:
    ok: dict[str, bool] = {}
    runs = res["spread"]
    names = [f"{r['run']} N={r['n']}" for r in runs]
    counts = []
    for r in runs:
        lags = [x["lag"] for x in r["lags"]]
        counts.append([100 * sum(lo <= v < hi for v in lags) / max(1, len(lags)) for lo, hi in LAG_BINS])
    labels = [f"<{hi:g}s" if lo == 0 else (f"≥{lo:g}s" if hi > 1e6 else f"{lo:g}–{hi:g}") for lo, hi in LAG_BINS]
    ok["histogram"] = plots.render(
        plots.bar_svg("Revocation lag (share of grants)", labels, names, counts, "% of grants"),
        ROOT / "docs/bench-revocation-histogram.png",
    )
    big = {r["run"]: r for r in sorted(runs, key=lambda r: r["n"])}  # the largest run of each
    ok["growth-rss"] = plots.render(
        plots.line_svg(
            "Worker RSS vs active grants",
            [f"{k} worker" for k in big] + ["server (project run)"],
            [rss_by_active(r, "worker") for r in big.values()] + [rss_by_active(big["project"], "server")],
            "active grants",
            "MiB",
        ),
        ROOT / "docs/bench-revocation-growth-rss.png",
    )
    width = max(100, big["project"]["n"] // 20)
    ok["growth-lag"] = plots.render(
        plots.line_svg(
            "Revocation lag p99 vs grants still active",
            list(big),
            [lag_p99_by_active(r, width) for r in big.values()],
            "grants still active at expiry",
            "seconds",
        ),
        ROOT / "docs/bench-revocation-growth-lag.png",
    )
    cr = res["crash"]
    t0 = cr["first_expiry"]
    ok["crash"] = plots.render(
        plots.line_svg(
            f"Lag by expiry; worker down {cr['events']['killed'] - t0:.0f}–{cr['events']['restarted'] - t0:.0f} s",
            ["lag of the grant expiring then"],
            [sorted((x["expires"] - t0, x["lag"]) for x in cr["lags"])],
            "expiry, s after the first",
            "seconds",
        ),
        ROOT / "docs/bench-revocation-crash.png",
    )
    return ok


def write(res: dict[str, Any]) -> None:
    write_section(SECTION, render(res, draw(res)))
