"""Judging a chaos run: did every request end right, on time, once, and was every caller told the truth?

For each request (a :class:`~tests.chaos_workload.Trace`), with every process
back up:

- its final state is the one its answers promise (deny 200 → denied, cancel
  200 → cancelled, revoke 200 → revoked, else an active grant → expired; a
  call whose answer was lost may have taken effect or not);
- an active grant has ended: the grant store holds its tombstone, and its
  access token introspects ``{"active": false}``;
- how late it ended (store tombstone − expiry), less the worker/server
  downtime inside that span (and the time a killed worker held one of its
  workflow tasks until Temporal timed it out): more than ``LATE_S`` is a failure;
- its Idempotency-Key made one request id and one workflow execution;
- every definite answer was true: an extend answered 200 is in the final
  extensions, a 409 is not; a revoke answered 200 ends revoked, a 409 does not;
- every read showed an expiry the grant really had (the first, or one after
  an extend answered 200), and no read sent after a terminal read showed a live grant.

:func:`summarize` turns the verdicts into the results dict; :func:`markdown`
into the table for docs/reliability.md.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from temporalio.api.enums.v1 import EventType

from core.grant_store import open_grant_store
from core.grants import GrantStore
from core.temporal import workflow_id
from tests.chaos_stack import ChaosStack, Outage, now
from tests.chaos_workload import AMBIGUOUS, OUTSIDE, TERMINAL, Call, Trace

LATE_S = 2.0  # beyond the downtime in its span, a grant ending later than this is a failure


@dataclass
class Verdict:
    trace: Trace
    problems: list[str] = field(default_factory=list)
    activated: bool = False
    ended: bool = False
    lag_s: float | None = None
    beyond_s: float | None = None
    truthful: int = 0
    judged: int = 0
    ambiguous: int = 0
    reads_ok: int = 0
    reads: int = 0
    executions: int = 0
    ids: set[str] = field(default_factory=set)
    repeated_across_kill: bool = False
    server_errors: int = 0


async def judge(stack: ChaosStack, traces: list[Trace]) -> list[Verdict]:
    store = open_grant_store(stack.settings)
    client = await stack.client()
    server = stack.auth("orders-db", "resource-servers")
    alice = stack.auth("alice", "engineers")
    verdicts = []
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as http:
        for t in traces:
            v = Verdict(t)
            final = t.final
            if t.request_id is not None and final is None:
                r = await http.get(f"/v1/requests/{t.request_id}", headers=alice)
                final = r.json() if r.status_code == 200 else None
            if t.gave_up:
                v.problems.append(f"gave up: {t.gave_up}")
            if t.request_id is not None:
                wid = workflow_id(t.request_id)
                v.executions = len([w async for w in client.list_workflows(f"WorkflowId = '{wid}'")])
                if t.scenario in OUTSIDE:
                    _check_ended_outside(v, store)
                    _check_idempotency(v)
                    _check_server_errors(v)
                    verdicts.append(v)
                    continue
                _check_final(v, final)
                held = await _held_by_dead_workers(client.get_workflow_handle(wid))
                _check_grant(v, final, store, [*stack.outages, *held])
                if v.beyond_s is not None and v.beyond_s > LATE_S:
                    v.problems.append(await _timeline(client.get_workflow_handle(wid), stack.outages))
                if t.token is not None:
                    r = await http.post("/v1/introspect", data={"token": t.token}, headers=server)
                    if r.status_code != 200 or r.json() != {"active": False}:
                        v.problems.append(f"token still introspects {r.status_code} {r.text[:100]}")
                        v.ended = False
                if final is not None:  # without a final view there is nothing to hold the answers to
                    _check_answers(v, final)
                    _check_reads(v, final)
            _check_idempotency(v)
            _check_server_errors(v)
            verdicts.append(v)
    return verdicts


async def _held_by_dead_workers(handle: Any) -> list[Outage]:
    """Workflow tasks of this request that a SIGKILLed worker held: one it had started, which
    Temporal hands to another worker only when its start-to-close timeout (10 s) runs out, and
    one queued on its sticky queue, until the sticky timeout sends it to the shared queue. That
    wait is part of the crash's downtime for this request, as it would be for any workflow."""
    at: dict[int, datetime] = {}
    held = []
    async for e in handle.fetch_history_events():
        if e.event_type in (EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED, EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED):
            at[e.event_id] = e.event_time.ToDatetime(tzinfo=UTC)
        elif e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
            timed_out = e.workflow_task_timed_out_event_attributes
            since = at.get(timed_out.started_event_id) or at.get(timed_out.scheduled_event_id)
            if since is not None:
                held.append(Outage("workflow task held by a killed worker", since, e.event_time.ToDatetime(tzinfo=UTC)))
    return held


async def _timeline(handle: Any, outages: list[Outage]) -> str:
    """A late grant's history from its last minute, beside the outages: where the time went."""
    rows: list[tuple[datetime, str]] = [(o.down_at, f"{o.name} down until {o.back_at}") for o in outages]
    async for e in handle.fetch_history_events():
        name = EventType.Name(e.event_type).removeprefix("EVENT_TYPE_")
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
            name += f"({e.workflow_task_timed_out_event_attributes.timeout_type})"
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
            name += f"({e.workflow_task_failed_event_attributes.failure.message[:80]})"
        rows.append((e.event_time.ToDatetime(tzinfo=UTC), f"{e.event_id} {name}"))
    rows.sort()
    end = rows[-1][0]
    return "timeline: " + "; ".join(
        f"{(at - end).total_seconds():+.1f}s {what}" for at, what in rows if end - at < timedelta(seconds=60)
    )


def _expected_status(t: Trace) -> set[str]:
    # What the request ends as if the verb never took effect: a pending one times out, a grant expires.
    for verb, status, otherwise in (
        ("deny", "denied", "timed_out"),
        ("cancel", "cancelled", "timed_out"),
        ("revoke", "revoked", "expired"),
    ):
        if any(c.status == 200 for c in t.of(verb)):
            return {status}
        # An answer lost to a kill may have been applied: its retry then finds the request ended (409).
        if any(c.status in AMBIGUOUS for c in t.of(verb)):
            return {status, otherwise}
    return {"expired"}


def _check_final(v: Verdict, final: dict[str, Any] | None) -> None:
    if final is None or final.get("status") not in TERMINAL:
        v.problems.append(f"not ended: {final.get('status') if final else 'no view'}")
        return
    expected = _expected_status(v.trace)
    if final["status"] not in expected:
        v.problems.append(f"ended {final['status']}, expected {' or '.join(sorted(expected))}")
    if final.get("activated_at") is not None:
        legit = _legit_expiries(final)
        if _dt(final["expires_at"]) != legit[-1]:
            v.problems.append(
                f"expires_at {final['expires_at']} is not activation + duration + extensions ({legit[-1]})"
            )


def _check_grant(v: Verdict, final: dict[str, Any] | None, store: GrantStore, outages: list[Outage]) -> None:
    row = store.lookup(v.trace.request_id or "")
    shown = [c.body for c in v.trace.calls if c.status == 200 and isinstance(c.body, dict)]
    # Activated: any answer showed it active, or the store has its grant (not a rollback's bare tombstone).
    v.activated = any(b.get("activated_at") for b in [*shown, final or {}]) or bool(row and row.requester)
    if not v.activated:
        return
    if row is None or row.revoked_at is None:
        v.problems.append("the grant store never revoked the grant" if row else "the grant store has no grant")
        return
    v.ended = final is not None and final.get("status") in TERMINAL
    expires = _dt(final["expires_at"]) if final and final.get("expires_at") else row.expires_at
    lag = max(timedelta(0), row.revoked_at - expires)
    down = _overlap(outages, expires, row.revoked_at)
    v.lag_s = lag.total_seconds()
    v.beyond_s = max(0.0, (lag - down).total_seconds())
    if v.beyond_s > LATE_S:
        v.problems.append(
            f"ended {v.lag_s:.1f}s after expiry, {down.total_seconds():.1f}s of it downtime: "
            f"{v.beyond_s:.1f}s late beyond downtime"
        )


def _check_ended_outside(v: Verdict, store: GrantStore) -> None:
    """Terminated or cancelled through Temporal: whatever the workflow shows, the grant must be revoked."""
    row = store.lookup(v.trace.request_id or "")
    v.activated = bool(row and row.requester)
    if v.trace.revoked_after_s is None:
        v.problems.append(f"{v.trace.scenario} from Temporal left the access token active")
    if row is None or row.revoked_at is None:
        v.problems.append(f"{v.trace.scenario} from Temporal: the grant store never revoked the grant")
    else:
        v.ended = v.trace.revoked_after_s is not None


def _check_answers(v: Verdict, final: dict[str, Any] | None) -> None:
    final = final or {}
    status = final.get("status")
    extended = {e.get("reason") for e in final.get("extensions") or []}
    approvers = {a.get("approver") for a in final.get("approvals") or []}
    for c in v.trace.calls:
        if c.verb in ("get", "create", "credentials"):
            continue
        if c.status in AMBIGUOUS:
            v.ambiguous += 1
            continue
        earlier_ambiguous = any(
            p.verb == c.verb and p.status in AMBIGUOUS and p.sent_at < c.sent_at for p in v.trace.calls
        )
        ok, why = _truthful(c, status, extended, approvers, earlier_ambiguous)
        v.judged += 1
        v.truthful += ok
        if not ok:
            v.problems.append(f"{c.verb} answered {c.status} but {why}")


def _truthful(
    c: Call, status: str | None, extended: set[str | None], approvers: set[str | None], retried: bool
) -> tuple[bool, str]:
    body = c.body if isinstance(c.body, dict) else {}
    if c.verb == "extend":
        if c.status == 200:
            shown = c.note in {e.get("reason") for e in body.get("extensions") or []}
            if not shown:
                return False, "its answer does not show the extension"
            return (c.note in extended, "the final view has no such extension")
        return (c.note not in extended, f"the extension is in the final view ({c.body})")
    if c.verb == "revoke":
        if c.status == 200:
            return (status == "revoked" and body.get("status") == "revoked", f"it ended {status}")
        return (status != "revoked" or retried, "the request ended revoked")
    if c.verb == "approve":
        if c.status == 200:
            return ("bob" in approvers, "the final view has no approval by bob")
        return (retried and "bob" in approvers, f"the request was pending ({c.body})")
    target = {"deny": "denied", "cancel": "cancelled"}[c.verb]
    if c.status == 200:
        return (status == target, f"it ended {status}")
    return (retried and status == target, f"the request ended {status}")


def _check_reads(v: Verdict, final: dict[str, Any] | None) -> None:
    if final is None or final.get("status") not in TERMINAL:
        return
    legit = set(_legit_expiries(final)) if final.get("activated_at") else set()
    reads = [c for c in v.trace.of("get") if c.status == 200 and isinstance(c.body, dict)]
    first_terminal = min((c.received_at for c in reads if c.body["status"] in TERMINAL), default=None)
    for c in reads:
        v.reads += 1
        expiry = c.body.get("expires_at")
        if expiry is not None and _dt(expiry) not in legit:
            v.problems.append(f"a read showed expires_at {expiry}, not one the grant had")
        elif first_terminal is not None and c.sent_at > first_terminal and c.body["status"] not in TERMINAL:
            v.problems.append(f"a read showed {c.body['status']} after one showed the request ended")
        else:
            v.reads_ok += 1


def _check_server_errors(v: Verdict) -> None:
    """A 500 is never an answer (Temporal down is a 503, a wrong state a 409)."""
    for c in v.trace.calls:
        if c.status is not None and c.status >= 500 and c.status not in AMBIGUOUS:
            v.server_errors += 1
            v.problems.append(f"{c.verb} answered {c.status}: {str(c.body)[:120]}")


def _check_idempotency(v: Verdict) -> None:
    creates = [c for c in v.trace.of("create") if c.status in (200, 201)]
    v.ids = {c.body["id"] for c in creates}
    kills = [c.kills_before for c in creates]
    v.repeated_across_kill = len(kills) > 1 and max(kills) > min(kills)
    if len(v.ids) > 1:
        v.problems.append(f"one Idempotency-Key made {len(v.ids)} requests")
    if v.executions > 1:
        v.problems.append(f"one Idempotency-Key made {v.executions} workflow executions")
    for c in v.trace.of("create"):
        if c.status not in (200, 201, *AMBIGUOUS):
            v.problems.append(f"create answered {c.status}: {str(c.body)[:120]}")


def _legit_expiries(final: dict[str, Any]) -> list[datetime]:
    at = _dt(final["activated_at"]) + timedelta(seconds=final["duration_s"])
    out = [at]
    for e in final.get("extensions") or []:
        at += timedelta(seconds=e["duration_s"])
        out.append(at)
    return out


def _overlap(outages: list[Outage], start: datetime, end: datetime) -> timedelta:
    """The time inside [start, end] when a worker or the server was down (overlapping outages once)."""
    spans = sorted((max(o.down_at, start), min(o.back_at or now(), end)) for o in outages)
    total, reach = timedelta(0), start
    for a, b in spans:
        a = max(a, reach)
        if b > a:
            total += b - a
            reach = b
    return total


def _dt(value: str) -> datetime:
    return datetime.fromisoformat(value)


# -- results -------------------------------------------------------------------------


def summarize(stack: ChaosStack, verdicts: list[Verdict], elapsed_s: float) -> dict[str, Any]:
    beyond = sorted(v.beyond_s for v in verdicts if v.beyond_s is not None)
    lags = sorted(v.lag_s for v in verdicts if v.lag_s is not None)
    activated = [v for v in verdicts if v.activated and v.trace.scenario not in OUTSIDE]
    outside = [v for v in verdicts if v.trace.scenario in OUTSIDE]
    inside = [v for v in verdicts if v.trace.scenario not in OUTSIDE]
    problems = [
        f"request {v.trace.index} ({v.trace.scenario}, {v.trace.resource}, {v.trace.request_id}): {p}"
        for v in verdicts
        for p, n in Counter(v.problems).items()
        for p in [p if n == 1 else f"{p} (x{n})"]
    ]
    return {
        "requests": len(verdicts),
        "scenarios": dict(Counter(v.trace.scenario for v in verdicts)),
        "elapsed_s": round(elapsed_s, 1),
        "kills": dict(stack.kills),
        "restarts": stack.restarts,
        "worker_deaths": stack.worker_deaths,
        "worker_cache_sizes": sorted(set(stack.cache_sizes_used)),
        "downtime_s": round(
            _overlap(stack.outages, min((o.down_at for o in stack.outages), default=now()), now()).total_seconds(), 1
        ),
        "right_terminal_state": [
            sum(not any(p.startswith(("ended ", "not ended")) for p in v.problems) for v in inside),
            len(inside),
        ],
        "grants_ended": [sum(v.ended for v in activated), len(activated)],
        "lag_s": _quantiles(lags),
        "lag_beyond_downtime_s": _quantiles(beyond),
        "late_beyond_downtime": sum(b > LATE_S for b in beyond),
        "ended_outside_api": [sum(v.ended for v in outside), len(outside)],
        "ended_outside_revoked_after_s": _quantiles(
            sorted(t for t in (v.trace.revoked_after_s for v in outside) if t is not None)
        ),
        "idempotency_keys": len(verdicts),
        "keys_repeated_across_kill": sum(v.repeated_across_kill for v in verdicts),
        "duplicates": sum(max(len(v.ids), v.executions) > 1 for v in verdicts),
        "callers_told_truth": [sum(v.truthful for v in verdicts), sum(v.judged for v in verdicts)],
        "ambiguous_answers": sum(v.ambiguous for v in verdicts),
        "reads_consistent": [sum(v.reads_ok for v in verdicts), sum(v.reads for v in verdicts)],
        "server_errors": sum(v.server_errors for v in verdicts),
        "problems": problems,
        "passed": not problems,
    }


def _quantiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "max": None}

    def pick(q: float) -> float:
        return round(values[min(len(values) - 1, int(q * len(values)))], 3)

    return {"p50": pick(0.5), "p99": pick(0.99), "max": round(values[-1], 3)}


def markdown(r: dict[str, Any]) -> str:
    def s(x: float | None) -> str:
        return "–" if x is None else f"{x:.2f} s"

    b, lag = r["lag_beyond_downtime_s"], r["lag_s"]
    rows = [
        ("requests", f"{r['requests']} ({', '.join(f'{k} {n}' for k, n in sorted(r['scenarios'].items()))})"),
        ("kills (Temporal / worker / API)", f"{r['kills']['temporal']} / {r['kills']['worker']} / {r['kills']['api']}"),
        ("restarts", str(r["restarts"])),
        ("worker/server downtime", f"{r['downtime_s']:.1f} s of {r['elapsed_s']:.0f} s"),
        ("worker cache sizes", ", ".join(map(str, r["worker_cache_sizes"]))),
        ("right terminal state", "{}/{}".format(*r["right_terminal_state"])),
        ("grants ended (store revoked, token inactive)", "{}/{}".format(*r["grants_ended"])),
        ("lag after expiry p50 / p99 / max", f"{s(lag['p50'])} / {s(lag['p99'])} / {s(lag['max'])}"),
        ("lag beyond downtime p50 / p99 / max", f"{s(b['p50'])} / {s(b['p99'])} / {s(b['max'])}"),
        (f"grants ended > downtime + {LATE_S:.0f} s late", str(r["late_beyond_downtime"])),
        ("ended from Temporal (terminate/cancel): grants revoked", "{}/{}".format(*r["ended_outside_api"]) + (f", within {s(r['ended_outside_revoked_after_s']['max'])}" if r["ended_outside_revoked_after_s"]["max"] is not None else "")),
        ("duplicates per Idempotency-Key", f"{r['duplicates']} ({r['idempotency_keys']} keys, {r['keys_repeated_across_kill']} repeated across a kill)"),
        ("racing callers told the truth", "{}/{}".format(*r["callers_told_truth"]) + f" ({r['ambiguous_answers']} ambiguous answers not judged)"),
        ("reads consistent", "{}/{}".format(*r["reads_consistent"])),
        ("5xx answers other than 502/503/504", str(r["server_errors"])),
    ]  # fmt: skip
    return "\n".join(["| measure | result |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)])
