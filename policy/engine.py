"""Access decisions: the catalog's rules plus the Cedar policies, answered in-process.

Everything is parsed and validated once, when the engine is built (PolicySource,
Catalog); a decision is one or two ``is_authorized_batch`` calls on pre-built
handles and does no I/O. An engine never changes: reloading builds a new one
(policy/loader.py), so a decision and the version it reports always agree.

Who may ask, and for how long, lives only in the policies: the longest duration a
principal may ask for is found by asking Cedar (policy/evaluator.py).
"""

from __future__ import annotations

import functools
import hashlib
import json
import threading
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import cedarpy

from core.catalog import Catalog, CatalogEntry
from core.durations import format_duration as fmt
from core.models import Actor
from policy.context import (
    SERVICE_ID,
    principal_json,
    principal_kind,
    principal_uid,
    request_context,
    resource_entity,
    service_entity,
    uid,
    unlisted_resource_entity,
)
from policy.decisions import CatalogView, Decision, RequestDecision, StageSpec
from policy.evaluator import Evaluator, asks, req
from policy.listing import catalog_views
from policy.source import SCHEMA_FILE, PolicyError, PolicySource, load_source

_DECISIONS = 4096  # distinct (sub, groups) remembered per engine: far more resource servers than expected


class PolicyEngine:
    def __init__(self, source: PolicySource, catalog: Catalog):
        self.catalog = catalog
        self.version = _version(source.files, catalog.version)
        self.policy_count = len(source.meta)
        self._cedar = Evaluator(source)
        schema, service = source.schema, service_entity()
        # Checking the catalog's resources against the schema here means a schema
        # edit the catalog cannot satisfy refuses to load, rather than to decide.
        self._service = _entities([service], schema, f"{SCHEMA_FILE}: Jit::Service")
        self._by_resource = {
            e.id: _entities([resource_entity(e), service], schema, f"{catalog.where(e.id)}: resource {e.id!r}")
            for e in catalog.entries()
        }
        everything = [resource_entity(e) for e in catalog.entries()] + [service]
        self._everything = _entities(everything, schema, str(catalog.path or "catalog"))
        # may_introspect's answers: asked on every request a resource server serves.
        # Per engine, so a reload (a new engine) starts afresh and no answer
        # outlives the rules that gave it.
        self._introspectors: dict[tuple[Any, ...], Decision] = {}
        self._introspectors_lock = threading.Lock()

    @classmethod
    def from_dir(cls, policies_dir: Path, catalog: Catalog) -> PolicyEngine:
        return cls(load_source(policies_dir), catalog)

    # -- requests ------------------------------------------------------------------

    def decide_request(
        self,
        actor: Actor,
        *,
        resource: str,
        action: str,
        duration_s: int,
        reason: str,
        ticket: str | None,
        break_glass: bool,
        mfa: bool,
        now: datetime,
    ) -> RequestDecision:
        entry = self.catalog.get(resource)
        refusal = _unknown(entry, resource, action)
        if refusal is not None:
            return RequestDecision(**refusal.model_dump(), policy_version=self.version)
        assert entry is not None  # _unknown refuses a missing entry
        rules = entry.rules(action)
        what = f"{action} on {entry.id}"
        verb = "break_glass" if break_glass else "request"
        limit = (rules.break_glass_max_s or 0) if break_glass else rules.max_duration_s
        ctx = request_context(
            action=action,
            duration_s=duration_s,
            reason=reason,
            ticket=ticket,
            break_glass=break_glass,
            mfa=mfa,
            now=now,
        )
        res = uid("Resource", entry.id)
        entities = self._with_principal(self._by_resource[entry.id], actor)
        who = principal_uid(actor)
        first = [req(who, verb, res, ctx)] + ([] if break_glass else [req(who, "auto_approve", res, ctx)])
        cedar = self._slice(actor)
        job = (cedar.candidates(limit), functools.partial(asks, who, res, ctx, (verb,)))
        answers, (cap,) = cedar.longest(entities, [job], first)
        decision = RequestDecision(
            allowed=False,
            max_duration_s=cap,
            approval_timeout_s=rules.approval_timeout_s,
            policy_version=self.version,
            break_glass=break_glass,
        )

        def refuse(reasons: list[str], field: str | None) -> RequestDecision:
            return decision.model_copy(update={"reasons": reasons, "field": field})

        # The catalog's rules first: they hold for everyone, and name the field to fix.
        if break_glass and not rules.break_glass_max_s:
            return refuse([f"{entry.id} offers no break-glass access"], "break_glass")
        if duration_s < 1:
            return refuse(["duration must be greater than zero"], "duration")
        if duration_s > limit:
            kind = "break-glass maximum" if break_glass else "maximum"
            return refuse([f"duration {fmt(duration_s)} exceeds the {kind} of {fmt(limit)} for {what}"], "duration")
        if (rules.require_reason or break_glass) and not reason.strip():
            return refuse([f"a reason is required for {what}"], "reason")
        if rules.require_ticket and not ctx["has_ticket"]:
            return refuse([f"a ticket is required for {what}"], "ticket")
        verdict = answers[0]
        if not verdict.allowed:
            if verdict.forbids:
                return refuse([m.describe() for m in verdict.forbids], verdict.blamed_field())
            if 0 < cap < duration_s:
                return refuse(
                    [f"duration {fmt(duration_s)} exceeds the {fmt(cap)} you may request for {what}"], "duration"
                )
            verb_text = verb.replace("_", "-")
            return refuse([f"no policy permits {actor.sub} to {verb_text} {what}", *verdict.errors], None)
        reasons = [m.describe() for m in verdict.matched]
        if break_glass:
            reasons.append("break-glass: access starts at once, without approvers")
            return decision.model_copy(update={"allowed": True, "reasons": reasons})
        stages = [StageSpec.of(s) for s in rules.stages]
        if not stages:
            reasons.append("auto-approved: the catalog has no approval stages for this action")
        elif answers[1].allowed:
            reasons += [f"auto-approved: {m.describe()}" for m in answers[1].matched]
            stages = []
        return decision.model_copy(
            update={"allowed": True, "reasons": reasons, "auto_approve": not stages, "stages": stages}
        )

    # -- approvals and roles -----------------------------------------------------------

    def may_approve(
        self,
        actor: Actor,
        *,
        requester: str,
        resource: str,
        action: str,
        duration_s: int,
        stage: str,
        mfa: bool,
        now: datetime,
        reason: str = "",
        ticket: str | None = None,
        break_glass: bool = False,
        escalated: bool = False,
        stage_groups: list[str] | None = None,
        extension: bool = False,
    ) -> Decision:
        """``stage_groups`` (snapshotted when the request was filed) wins over the catalog's
        current groups; ``escalated`` adds the stage's escalate_to groups to the catalog's."""
        if actor.sub == requester:  # four eyes, whatever the policies say
            return Decision(allowed=False, reasons=["you cannot approve your own request"])
        if stage_groups is None:
            entry = self.catalog.get(resource)
            refusal = _unknown(entry, resource, action)
            if refusal is not None:
                return refusal
            assert entry is not None  # _unknown refuses a missing entry
            spec = next((s for s in entry.rules(action).stages if s.name == stage), None)
            if spec is None:
                return Decision(allowed=False, reasons=[f"{action} on {resource} has no approval stage {stage!r}"])
            stage_groups = spec.groups + (spec.escalate_to if escalated else [])
        if not actor.in_any(stage_groups):
            return Decision(allowed=False, reasons=[f"stage {stage!r} is approved by {', '.join(stage_groups)}"])
        ctx = request_context(
            action=action,
            duration_s=duration_s,
            reason=reason,
            ticket=ticket,
            break_glass=break_glass,
            mfa=mfa,
            now=now,
        )
        ctx.update(requester=requester, stage=stage, extension=extension)
        return self._single(actor, "approve", resource, ctx)

    def may_revoke(self, actor: Actor, *, requester: str, resource: str) -> Decision:
        if actor.sub == requester:
            return Decision(allowed=True, reasons=["the requester may always give access up"])
        return self._single(actor, "revoke", resource, {"requester": requester})

    def may_audit(self, actor: Actor) -> Decision:
        return self._single(actor, "audit", None, {})

    def may_introspect(self, actor: Actor) -> Decision:
        """Remembered per (sub, groups): the question has no context, no time and no
        resource, so the answer can only change with the rules, i.e. with the engine.
        The Decision is shared between callers: read it, never change it."""
        key = (principal_kind(actor), actor.sub, tuple(actor.groups), tuple(sorted(actor.attributes.items())))
        decision = self._introspectors.get(key)
        if decision is None:
            decision = self._single(actor, "introspect", None, {})
            with self._introspectors_lock:
                if len(self._introspectors) >= _DECISIONS:
                    self._introspectors.clear()  # bounded; refilled at a Cedar call per caller
                self._introspectors[key] = decision
        return decision

    # -- the catalog as one caller sees it ---------------------------------------------

    def catalog_for(self, actor: Actor, now: datetime, *, mfa: bool = False) -> list[CatalogView]:
        """What ``actor`` may request now, assuming they give a reason and a ticket."""
        entities = self._with_principal(self._everything, actor)
        cedar = self._slice(actor)
        return catalog_views(cedar, self.catalog, entities, actor, now, mfa=mfa)

    # -- helpers -----------------------------------------------------------------------

    def _single(self, actor: Actor, action: str, resource: str | None, ctx: dict[str, Any]) -> Decision:
        if resource is None:
            entities, res = self._with_principal(self._service, actor), uid("Service", SERVICE_ID)
        elif resource in self._by_resource:
            entities, res = self._with_principal(self._by_resource[resource], actor), uid("Resource", resource)
        else:  # gone from the catalog since it was requested: judged as strictly as possible
            entities = self._with_principal(self._service, actor, [unlisted_resource_entity(resource)])
            res = uid("Resource", resource)
        cedar = self._slice(actor)
        answer = cedar.run(entities, [req(principal_uid(actor), action, res, ctx)])[0]
        if answer.allowed:
            return Decision(allowed=True, reasons=[m.describe() for m in answer.matched])
        if answer.forbids:
            return Decision(allowed=False, reasons=[m.describe() for m in answer.forbids], field=answer.blamed_field())
        return Decision(allowed=False, reasons=[f"no policy permits {actor.sub} to {action}", *answer.errors])

    def _slice(self, actor: Actor) -> Any:
        return self._cedar.slice_for(actor.sub, actor.groups, principal_kind(actor))

    def _with_principal(self, base: cedarpy.Entities, actor: Actor, extra: Sequence[dict[str, Any]] = ()) -> Any:
        """``base`` plus the caller (a workload with its attributes). Cedar refusing the entity
        (an attribute of the wrong type) is a PolicyError naming the caller, not a crash."""
        delta = json.loads(principal_json(actor)) + list(extra)
        try:
            return base.with_added_json_str(json.dumps(delta))
        except ValueError as e:
            raise PolicyError([f"the caller {actor.sub!r} does not fit {SCHEMA_FILE}: {e}"]) from e


def _entities(entities: list[dict[str, Any]], schema: Any, what: str) -> cedarpy.Entities:
    try:
        return cedarpy.Entities.from_json_str(json.dumps(entities), schema)
    except ValueError as e:
        given = ", ".join(entities[0]["attrs"])
        raise PolicyError([f"{what} does not fit {SCHEMA_FILE} (attributes given: {given}): {e}"]) from e


def _unknown(entry: CatalogEntry | None, resource: str, action: str) -> Decision | None:
    if entry is None:
        return Decision(allowed=False, reasons=[f"resource {resource!r} is not in the catalog"], field="resource")
    if action not in entry.actions:
        offered = ", ".join(entry.actions)
        return Decision(
            allowed=False,
            reasons=[f"action {action!r} is not offered on {entry.id}; one of: {offered}"],
            field="action",
        )
    return None


def _version(files: list[tuple[str, bytes]], catalog_version: str) -> str:
    digest = hashlib.sha256()
    for name, content in files:
        digest.update(name.encode() + b"\0" + content + b"\0")
    digest.update(catalog_version.encode())
    return "sha256:" + digest.hexdigest()[:16]
