"""Evaluating only the caller's slice of the policy set decides exactly as the whole set does.

The engine skips policies whose principal scope names another user or group
(policy/evaluator.py). Here every kind of scope is mixed into the example set, and
many callers' decisions are compared with the same engine forced to use the full set.
"""

from __future__ import annotations

import itertools
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.models import Actor
from policy import PolicyEngine, load_engine

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

SCOPES = [
    'principal in Jit::Group::"team-a"',
    'principal == Jit::User::"alice"',
    'principal in Jit::User::"bob"',
    'principal is Jit::User in Jit::Group::"team-b"',
    "principal is Jit::User",
    "principal",
]
EXTRA = "\n".join(
    f'@id("extra-{i}")\n{effect} ({scope}, action == Jit::Action::"{action}", resource)\n'
    f'when {{ context.duration_s <= {limit} && resource.kind == "postgres" }};\n'
    for i, (scope, (effect, action), limit) in enumerate(
        itertools.product(
            SCOPES,
            [("permit", "request"), ("permit", "auto_approve"), ("forbid", "request"), ("permit", "break_glass")],
            [1000, 5000],
        )
    )
    if not (effect == "forbid" and limit == 5000)  # keep some requests allowed
)

ACTORS = [
    Actor(sub=sub, groups=groups)
    for sub in ("alice", "bob", "carol")
    for groups in ([], ["team-a"], ["team-b"], ["team-a", "team-b", "engineers"], ["oncall", "sre"], ["db-owners"])
]


@pytest.fixture(scope="module")
def engines(tmp_path_factory) -> tuple[PolicyEngine, PolicyEngine]:
    policies = tmp_path_factory.mktemp("slices") / "policies"
    shutil.copytree(ROOT / "config/policies", policies)
    (policies / "extra.cedar").write_text(EXTRA)
    sliced = load_engine(policies, ROOT / "config/catalog.yaml")
    whole = load_engine(policies, ROOT / "config/catalog.yaml")
    everything = whole._cedar._full
    whole._cedar.slice_for = lambda sub, groups, kind="User": everything  # the reference: no slicing
    return sliced, whole


@pytest.mark.parametrize("actor", ACTORS, ids=lambda a: f"{a.sub}:{'+'.join(a.groups) or 'none'}")
def test_slice_decides_like_the_whole_set(engines, actor: Actor) -> None:
    sliced, whole = engines
    for resource, action, duration, glass in itertools.product(
        ["postgres:orders/public.orders", "k8s:prod/logs"], ["read", "write"], [600, 2400, 3600], [False, True]
    ):
        ask = dict(
            resource=resource,
            action=action,
            duration_s=duration,
            reason="r",
            ticket="T-1",
            break_glass=glass,
            mfa=True,
            now=NOW,
        )
        assert sliced.decide_request(actor, **ask) == whole.decide_request(actor, **ask), ask
    assert sliced.catalog_for(actor, NOW, mfa=True) == whole.catalog_for(actor, NOW, mfa=True)
    approve = dict(requester="zed", resource="postgres:orders/public.orders", action="read", duration_s=600, mfa=False)
    assert sliced.may_approve(actor, stage="approval", now=NOW, **approve) == whole.may_approve(
        actor, stage="approval", now=NOW, **approve
    )
    assert sliced.may_audit(actor) == whole.may_audit(actor)


def test_slices_are_smaller_and_shared(engines) -> None:
    sliced, _ = engines
    cedar = sliced._cedar
    a = cedar.slice_for("carol", ["team-a", "unrelated"])
    assert cedar.slice_for("dave", ["team-a"]) is a  # groups no policy names do not split the cache
    assert len(a._meta) < sliced.policy_count
    assert any(m.id.startswith("extra-") for m in a._meta.values())
