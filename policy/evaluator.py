"""Cedar calls for the engine: per-principal policy slices, batches, the duration search.

Two costs dominate a cedarpy call: building each request from its context, and
evaluating every policy of the set (Cedar has no index). So the engine asks all a
decision needs in one ``is_authorized_batch`` call (the duration search in at most
one more), and evaluates only the policies that can apply to the caller: those
whose principal scope is anyone, the caller, or one of the caller's groups.

That slice is exact because the engine builds the entities itself: a User's
parents are exactly the token's groups, and Groups have no parents, so
``principal in Jit::Group::"g"`` can only hold for members of g.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import cedarpy

from policy.context import uid
from policy.source import PolicyMeta, PolicySource

_GRID = 64  # without exact breakpoints, try this many evenly spaced durations (never finer than 60 s)
_SLICES = 1024  # distinct (user, groups) combinations kept; real ones are few (one per team mix)

# One search: the candidate durations (longest first) and, for a duration, the
# requests that must all be allowed at it.
Job = tuple[list[int], Callable[[int], list[dict[str, Any]]]]


@dataclass
class Answer:
    allowed: bool
    matched: list[PolicyMeta]  # the permits that allowed, or the forbids that denied
    errors: list[str]

    @property
    def forbids(self) -> list[PolicyMeta]:
        return [] if self.allowed else self.matched

    def blamed_field(self) -> str | None:
        return next((m.field for m in self.forbids if m.field), None)


Principal = str | dict[str, str]  # a User's sub, or an entity uid (policy.context.principal_uid)


def req(principal: Principal, action: str, res: dict[str, str], ctx: dict[str, Any]) -> dict[str, Any]:
    who = uid("User", principal) if isinstance(principal, str) else principal
    return {"principal": who, "action": uid("Action", action), "resource": res, "context": ctx}


def asks(
    principal: Principal, res: dict[str, str], ctx: dict, actions: tuple[str, ...], duration_s: int
) -> list[dict[str, Any]]:
    """The requests of one duration in a Job: ``actions`` at ``duration_s``."""
    return [req(principal, a, res, {**ctx, "duration_s": duration_s}) for a in actions]


class Evaluator:
    """Hands out the slice of the policy set that can apply to a principal, cached."""

    def __init__(self, source: PolicySource):
        self._source = source
        self._anyone: list[PolicyMeta] = []
        self._scoped: dict[tuple[str, str], list[PolicyMeta]] = {}
        for m in source.meta.values():
            (self._anyone if m.principal is None else self._scoped.setdefault(m.principal, [])).append(m)
        self._full = PolicySlice(source.policy_set, source.schema, source.meta)
        self._slices: OrderedDict[frozenset, PolicySlice] = OrderedDict()
        self._lock = threading.Lock()  # the API may decide from several threads

    def slice_for(self, sub: str, groups: Iterable[str], kind: str = "User") -> PolicySlice:
        # Only scopes some policy names make the key: other groups do not split the cache.
        key = frozenset(k for k in [(kind, sub), *(("Group", g) for g in groups)] if k in self._scoped)
        with self._lock:
            found = self._slices.get(key)
            if found is not None:
                self._slices.move_to_end(key)
                return found
        chosen = self._anyone + [m for k in key for m in self._scoped[k]]
        if len(chosen) == len(self._source.meta):
            found = self._full
        else:
            chosen.sort(key=lambda m: (m.file, m.line))  # file order, as the ids are numbered
            policy_set = cedarpy.PolicySet.from_str("\n".join(m.text for m in chosen))
            found = PolicySlice(policy_set, self._source.schema, {f"policy{i}": m for i, m in enumerate(chosen)})
        with self._lock:  # built outside the lock: two threads may build the same slice, harmlessly
            self._slices[key] = found
            if len(self._slices) > _SLICES:
                self._slices.popitem(last=False)
        return found


class PolicySlice:
    def __init__(self, policy_set: cedarpy.PolicySet, schema: cedarpy.Schema, meta: dict[str, PolicyMeta]):
        self._policy_set = policy_set
        self._schema = schema
        self._meta = meta  # this set's positional ids -> the policies
        self._breakpoints = sorted({b for m in meta.values() for b in m.breakpoints})
        self._exact = all(m.exact for m in meta.values())
        self._candidate_cache: dict[int, list[int]] = {}

    def run(self, entities: Any, requests: list[dict[str, Any]]) -> list[Answer]:
        if not requests:
            return []
        # The schema is passed although the policies were validated at load: it checks
        # each context we build, so an engine bug cannot become a silently different
        # decision (it costs about a quarter of a request).
        results = cedarpy.is_authorized_batch(requests, self._policy_set, entities, self._schema)
        meta = self._meta
        return [
            Answer(
                r.allowed,
                # In file order: Cedar reports a set, and explanations should not shuffle.
                sorted((meta[p] for p in r.diagnostics.reasons if p in meta), key=lambda m: (m.file, m.line)),
                [self._named(e) for e in r.diagnostics.errors],
            )
            for r in results
        ]

    def candidates(self, limit: int) -> list[int]:
        """Durations that can be the largest one permitted, longest first.

        Exact when the policies compare ``context.duration_s`` only with literals: a
        decision can flip only at a literal ``c`` (between ``c - 1`` and ``c``, or ``c``
        and ``c + 1``), so the largest permitted duration is ``limit``, some ``c`` or
        some ``c - 1``. Otherwise an evenly spaced grid of ``_GRID`` steps, no finer
        than 60 s, is added, and the cap is exact only to that step.
        """
        if limit <= 0:
            return []
        cached = self._candidate_cache.get(limit)
        if cached is None:
            found = {limit} | {d for c in self._breakpoints for d in (c, c - 1) if 1 <= d < limit}
            if not self._exact:
                step = max(60, -(-limit // _GRID))
                found.update(range(step, limit, step))
            cached = self._candidate_cache[limit] = sorted(found, reverse=True)
        return cached

    def longest(
        self, entities: Any, jobs: list[Job], first: Sequence[dict[str, Any]] = ()
    ) -> tuple[list[Answer], list[int]]:
        """Answer ``first``, and for each job the longest candidate that passes (0: none).

        Two batches at most, whatever the number of jobs: ``first`` with every job's
        longest candidate (the usual answer: the limit itself), then all the other
        candidates of the jobs still open.
        """
        found = [0] * len(jobs)
        answers: list[Answer] = []
        for phase in (slice(0, 1), slice(1, None)):
            plan = [(j, d, make(d)) for j, (cands, make) in enumerate(jobs) if not found[j] for d in cands[phase]]
            head = list(first) if phase.start == 0 else []
            if not plan and not head:
                continue
            results = iter(self.run(entities, head + [r for _, _, reqs in plan for r in reqs]))
            answers = answers or list(itertools.islice(results, len(head)))
            for j, d, reqs in plan:
                ok = all([a.allowed for a in itertools.islice(results, len(reqs))])  # a list: consume them all
                if ok and not found[j]:
                    found[j] = d
        return answers, found

    def _named(self, error: str) -> str:
        # Cedar names policies by position; people know them by @id.
        return re.sub(r"policy\d+", lambda m: self._meta[m.group()].id if m.group() in self._meta else m.group(), error)
