"""``PolicyEngine.catalog_for``: the catalog as one caller sees it, decided by Cedar.

One search per resource action and question (may request, auto-approved, may
break glass), all in two Cedar batches (Evaluator.longest), so listing a catalog
costs about as much as two decisions whatever its size.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from core.catalog import ActionRules, Catalog, CatalogEntry
from core.models import Actor
from policy.context import principal_uid, request_context, uid
from policy.decisions import CatalogAction, CatalogView, StageSpec
from policy.evaluator import Job, PolicySlice, asks


def catalog_views(
    cedar: PolicySlice, catalog: Catalog, entities: Any, actor: Actor, now: datetime, *, mfa: bool
) -> list[CatalogView]:
    pairs: list[tuple[CatalogEntry, ActionRules]] = []
    jobs: list[Job] = []
    for entry in catalog.entries():
        res = uid("Resource", entry.id)
        for action in entry.actions:
            rules = entry.rules(action)
            # Assume the caller gives a reason and a ticket: the listing shows what is
            # possible, and a request without them is told which one is missing.
            ctx = request_context(
                action=action, duration_s=1, reason="-", ticket="-", break_glass=False, mfa=mfa, now=now
            )
            durations = cedar.candidates(rules.max_duration_s)
            auto = ("request", "auto_approve") if rules.stages else ("request",)
            glass_ctx = {**ctx, "break_glass": True}
            jobs += [
                (durations, functools.partial(asks, principal_uid(actor), res, ctx, ("request",))),
                (durations, functools.partial(asks, principal_uid(actor), res, ctx, auto)),
                (
                    cedar.candidates(rules.break_glass_max_s or 0),
                    functools.partial(asks, principal_uid(actor), res, glass_ctx, ("break_glass",)),
                ),
            ]
            pairs.append((entry, rules))
    _, caps = cedar.longest(entities, jobs)
    views: dict[str, CatalogView] = {}
    for i, (entry, rules) in enumerate(pairs):
        cap, auto_cap, glass_cap = caps[3 * i : 3 * i + 3]
        if not (cap or glass_cap):
            continue  # only what the caller may ask for
        stages = [StageSpec.of(s) for s in rules.stages]
        view = views.setdefault(
            entry.id,
            CatalogView(
                resource=entry.id,
                description=entry.description,
                kind=entry.kind or "generic",
                environment=entry.environment,
                sensitivity=entry.sensitivity,
                actions=[],
            ),
        )
        view.actions.append(
            CatalogAction(
                action=rules.action,
                max_duration_s=cap,
                approvals_required=sum(s.approvals for s in stages),
                stages=stages,
                approval_timeout_s=rules.approval_timeout_s,
                auto_approve=auto_cap > 0,
                auto_approve_max_s=auto_cap,
                break_glass_max_s=glass_cap,
                require_reason=rules.require_reason,
                require_ticket=rules.require_ticket,
            )
        )
    return list(views.values())
