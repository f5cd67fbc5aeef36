"""The example policy (config/policies + config/catalog.yaml) as a table of decisions.

Pure in-process: no server. Each row is one question and the answer the policy
must give; a policy edit that changes an answer shows up here as a named row.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.models import Actor
from policy import PolicyEngine, load_engine, mfa_from_claims

ROOT = Path(__file__).resolve().parent.parent
WEDNESDAY_NOON = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
SATURDAY_NOON = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
WEDNESDAY_NIGHT = datetime(2026, 11, 25, 21, 0, tzinfo=UTC)

ORDERS = "postgres:orders/public.orders"
CUSTOMERS = "postgres:orders/public.customers"
LOGS = "k8s:prod/logs"
STAGING = "postgres:orders-staging/public.orders"

ENGINEER = ["engineers"]
ONCALL = ["oncall"]
CONTRACTOR = ["contractors"]
SRE = ["sre"]


@pytest.fixture(scope="module")
def engine() -> PolicyEngine:
    return load_engine(ROOT / "config/policies", ROOT / "config/catalog.yaml")


def ask(engine: PolicyEngine, groups: list[str], **overrides):
    args = {
        "resource": ORDERS,
        "action": "read",
        "duration_s": 900,
        "reason": "INC-123: refund stuck",
        "ticket": None,
        "break_glass": False,
        "mfa": False,
        "now": WEDNESDAY_NOON,
    }
    args.update(overrides)
    return engine.decide_request(Actor(sub="alice", groups=groups), **args)


# (groups, request fields, expected): expected keys are checked when present.
# "stages" is [(name, approvals, groups)], "says" a substring of some reason.
# One row a line: the tables read as tables (hence no formatter inside them).
# fmt: off
REQUESTS = [
    # -- reads: engineers need one approval from db-owners, up to 1h
    pytest.param(ENGINEER, {}, {"allowed": True, "max": 3600, "stages": [("approval", 1, ["db-owners"])], "says": "engineers-read"}, id="engineer-read-one-approval"),
    pytest.param(ENGINEER, {"duration_s": 3600}, {"allowed": True, "max": 3600, "auto": False}, id="engineer-read-at-the-max"),
    pytest.param(ENGINEER, {"duration_s": 7200}, {"allowed": False, "field": "duration", "says": "maximum of 1h"}, id="engineer-read-over-catalog-max"),
    pytest.param(ENGINEER, {"resource": LOGS, "duration_s": 7200}, {"allowed": False, "field": "duration", "max": 3600, "says": "the 1h you may request"}, id="engineer-logs-capped-at-1h-by-policy"),
    pytest.param(ENGINEER, {"resource": LOGS, "duration_s": 3600}, {"allowed": True, "auto": True, "stages": [], "says": "no approval stages"}, id="engineer-logs-auto-by-catalog"),
    pytest.param(ENGINEER + ONCALL, {"resource": LOGS, "duration_s": 7200}, {"allowed": True, "max": 14400, "auto": True}, id="engineer-and-oncall-get-the-larger-cap"),
    pytest.param(ENGINEER, {"resource": STAGING, "duration_s": 3600}, {"allowed": True, "max": 3600, "stages": [("approval", 1, ["db-owners"])]}, id="engineer-staging-read"),
    # -- on-call: auto-approved reads up to 30m, any read up to the catalog max
    pytest.param(ONCALL, {"duration_s": 1800}, {"allowed": True, "auto": True, "stages": [], "max": 3600, "says": "oncall-auto-read"}, id="oncall-read-30m-auto"),
    pytest.param(ONCALL, {"duration_s": 1801}, {"allowed": True, "auto": False, "stages": [("approval", 1, ["db-owners"])]}, id="oncall-read-over-30m-needs-approval"),
    pytest.param(ONCALL, {"resource": LOGS, "duration_s": 14400}, {"allowed": True, "auto": True, "max": 14400}, id="oncall-logs-4h"),
    pytest.param(ONCALL, {"resource": CUSTOMERS, "duration_s": 600, "ticket": "INC-123"}, {"allowed": True, "auto": False, "stages": [("privacy", 1, ["privacy"]), ("db-owners", 1, ["db-owners"])]}, id="oncall-restricted-never-auto"),
    pytest.param(ONCALL, {"action": "write", "ticket": "CHG-1"}, {"allowed": False, "field": None, "max": 0, "says": "no policy permits"}, id="oncall-may-not-write"),
    # -- contractors: 15m, nothing restricted
    pytest.param(CONTRACTOR, {"duration_s": 600}, {"allowed": True, "max": 900, "says": "contractors-read"}, id="contractor-read-10m"),
    pytest.param(CONTRACTOR, {"duration_s": 1800}, {"allowed": False, "field": "duration", "max": 900, "says": "the 15m you may request"}, id="contractor-read-30m-capped"),
    pytest.param(CONTRACTOR, {"resource": CUSTOMERS, "duration_s": 600, "ticket": "INC-1"}, {"allowed": False, "field": None, "max": 0}, id="contractor-no-restricted"),
    pytest.param([], {"resource": LOGS}, {"allowed": False, "field": None, "max": 0, "says": "no policy permits alice"}, id="no-groups-nothing"),
    # -- writes: two stages (db-owners, then data-owners), a ticket, business hours
    pytest.param(ENGINEER, {"action": "write", "duration_s": 1200, "ticket": "CHG-1"}, {"allowed": True, "max": 1800, "stages": [("db-owners", 1, ["db-owners"]), ("data-owners", 1, ["data-owners"])]}, id="engineer-write-two-stages"),
    pytest.param(ENGINEER, {"action": "write", "duration_s": 1200}, {"allowed": False, "field": "ticket", "says": "ticket is required"}, id="engineer-write-needs-ticket"),
    pytest.param(ENGINEER, {"action": "write", "duration_s": 2700, "ticket": "CHG-1"}, {"allowed": False, "field": "duration", "says": "maximum of 30m"}, id="engineer-write-over-override-max"),
    pytest.param(ENGINEER, {"action": "write", "ticket": "CHG-1", "now": SATURDAY_NOON}, {"allowed": False, "field": None, "max": 0, "says": "production-writes-in-business-hours"}, id="engineer-write-saturday"),
    pytest.param(ENGINEER, {"action": "write", "ticket": "CHG-1", "now": WEDNESDAY_NIGHT}, {"allowed": False, "says": "production-writes-in-business-hours"}, id="engineer-write-at-night"),
    pytest.param(ENGINEER, {"resource": STAGING, "action": "write", "now": SATURDAY_NOON}, {"allowed": True, "stages": [("approval", 1, ["db-owners"])]}, id="engineer-write-staging-saturday"),
    pytest.param(ENGINEER, {"resource": LOGS, "action": "write"}, {"allowed": False, "field": "action", "says": "one of: read"}, id="action-not-offered"),
    # -- the catalog's rules
    pytest.param(ENGINEER, {"resource": CUSTOMERS, "duration_s": 600}, {"allowed": False, "field": "ticket"}, id="customers-needs-ticket"),
    pytest.param(ENGINEER, {"resource": CUSTOMERS, "duration_s": 600, "ticket": "INC-9"}, {"allowed": True, "max": 1800, "stages": [("privacy", 1, ["privacy"]), ("db-owners", 1, ["db-owners"])]}, id="customers-two-stages"),
    pytest.param(ENGINEER, {"reason": "   "}, {"allowed": False, "field": "reason", "says": "reason is required"}, id="reason-required"),
    pytest.param(ENGINEER, {"resource": "postgres:nope"}, {"allowed": False, "field": "resource", "says": "not in the catalog"}, id="unknown-resource"),
    pytest.param(ENGINEER, {"duration_s": 0}, {"allowed": False, "field": "duration"}, id="zero-duration"),
    # -- break-glass: SRE with MFA, at once, capped by break_glass_max
    pytest.param(SRE, {"break_glass": True, "mfa": True, "duration_s": 3600}, {"allowed": True, "break_glass": True, "auto": False, "stages": [], "max": 3600, "says": "sre-break-glass"}, id="sre-break-glass"),
    pytest.param(SRE, {"break_glass": True, "mfa": True, "action": "write", "duration_s": 3600, "ticket": "INC-7", "now": SATURDAY_NOON}, {"allowed": True, "break_glass": True}, id="sre-break-glass-write-on-saturday"),
    pytest.param(SRE, {"break_glass": True, "mfa": True, "duration_s": 5400}, {"allowed": False, "field": "duration", "says": "break-glass maximum of 1h"}, id="sre-break-glass-over-max"),
    pytest.param(SRE, {"break_glass": True, "mfa": False}, {"allowed": False, "field": "mfa", "says": "break-glass-needs-mfa"}, id="sre-break-glass-needs-mfa"),
    pytest.param(SRE, {"break_glass": True, "mfa": True, "resource": CUSTOMERS, "duration_s": 1200, "ticket": "INC-1"}, {"allowed": False, "field": "duration", "says": "15m"}, id="sre-break-glass-customers-15m"),
    pytest.param(SRE, {"break_glass": True, "mfa": True, "resource": LOGS}, {"allowed": False, "field": "break_glass", "says": "no break-glass"}, id="no-break-glass-on-logs"),
    pytest.param(ENGINEER, {"break_glass": True, "mfa": True}, {"allowed": False, "field": None, "max": 0, "says": "no policy permits alice to break-glass"}, id="engineer-may-not-break-glass"),
    pytest.param(SRE, {}, {"allowed": False, "field": None, "says": "no policy permits"}, id="sre-without-break-glass-is-nobody"),
]
# fmt: on


@pytest.mark.parametrize(("groups", "fields", "expected"), REQUESTS)
def test_request(engine: PolicyEngine, groups, fields, expected) -> None:
    d = ask(engine, groups, **fields)
    assert d.allowed is expected["allowed"], d
    assert d.policy_version == engine.version
    if "field" in expected:
        assert d.field == expected["field"], d
    if "max" in expected:
        assert d.max_duration_s == expected["max"], d
    if "auto" in expected:
        assert d.auto_approve is expected["auto"], d
    if "break_glass" in expected:
        assert d.break_glass is expected["break_glass"], d
    if "stages" in expected:
        assert [(s.name, s.approvals, s.groups) for s in d.stages] == expected["stages"], d
    if "says" in expected:
        assert any(expected["says"] in r for r in d.reasons), d.reasons
    if d.allowed:
        assert d.needs_approval is bool(d.stages)
        assert d.field is None


def approve(engine: PolicyEngine, sub: str, groups: list[str], **overrides):
    args = {
        "requester": "alice",
        "resource": ORDERS,
        "action": "read",
        "duration_s": 900,
        "stage": "approval",
        "mfa": True,
        "now": WEDNESDAY_NOON,
    }
    args.update(overrides)
    return engine.may_approve(Actor(sub=sub, groups=groups), **args)


# fmt: off
APPROVALS = [
    pytest.param("bob", ["db-owners"], {}, True, "stage-approvers", id="db-owner-with-mfa"),
    pytest.param("bob", ["db-owners"], {"mfa": False}, False, "production-approval-needs-mfa", id="production-needs-mfa"),
    pytest.param("bob", ["db-owners"], {"mfa": False, "resource": STAGING}, True, "stage-approvers", id="staging-without-mfa"),
    pytest.param("alice", ["db-owners"], {}, False, "your own request", id="self-approval-refused"),
    pytest.param("alice", ["db-owners", "jit-admins"], {"stage_groups": ["db-owners"]}, False, "your own request", id="self-approval-refused-even-with-snapshot"),
    pytest.param("carol", ["privacy"], {}, False, "approved by db-owners", id="wrong-group"),
    pytest.param("dan", ["data-owners"], {"action": "write", "stage": "data-owners"}, True, "stage-approvers", id="write-stage-2-data-owner"),
    pytest.param("bob", ["db-owners"], {"action": "write", "stage": "data-owners"}, False, "approved by data-owners", id="write-stage-2-not-db-owner"),
    pytest.param("erin", ["data-leads"], {"action": "write", "stage": "data-owners"}, False, "data-owners", id="escalation-not-yet"),
    pytest.param("erin", ["data-leads"], {"action": "write", "stage": "data-owners", "escalated": True}, True, "stage-approvers", id="escalated-to-data-leads"),
    pytest.param("bob", ["db-owners"], {"stage": "nope"}, False, "no approval stage", id="unknown-stage"),
    pytest.param("bob", ["db-owners"], {"resource": "postgres:gone/t", "stage_groups": ["db-owners"]}, True, "stage-approvers", id="snapshot-groups-resource-gone"),
    pytest.param("bob", ["db-owners"], {"resource": "postgres:gone/t", "stage_groups": ["db-owners"], "mfa": False}, False, "needs-mfa", id="gone-resource-judged-as-production"),
]
# fmt: on


@pytest.mark.parametrize(("sub", "groups", "fields", "allowed", "says"), APPROVALS)
def test_approve(engine: PolicyEngine, sub, groups, fields, allowed, says) -> None:
    d = approve(engine, sub, groups, **fields)
    assert d.allowed is allowed, d
    assert any(says in r for r in d.reasons), d.reasons


ROLES = [
    pytest.param("revoke", "alice", [], True, id="requester-revokes-own"),
    pytest.param("revoke", "root", ["jit-admins"], True, id="admin-revokes"),
    pytest.param("revoke", "bob", ["db-owners"], False, id="approver-may-not-revoke"),
    pytest.param("revoke-gone", "root", ["jit-admins"], True, id="admin-revokes-resource-gone-from-catalog"),
    pytest.param("audit", "audrey", ["auditors"], True, id="auditor-audits"),
    pytest.param("audit", "root", ["jit-admins"], True, id="admin-audits"),
    pytest.param("audit", "alice", ["engineers"], False, id="engineer-may-not-audit"),
    pytest.param("introspect", "orders-db", ["resource-servers"], True, id="resource-server-introspects"),
    pytest.param("introspect", "audrey", ["auditors"], False, id="auditor-may-not-introspect"),
]


@pytest.mark.parametrize(("what", "sub", "groups", "allowed"), ROLES)
def test_roles(engine: PolicyEngine, what, sub, groups, allowed) -> None:
    actor = Actor(sub=sub, groups=groups)
    if what == "revoke":
        d = engine.may_revoke(actor, requester="alice", resource=ORDERS)
    elif what == "revoke-gone":
        d = engine.may_revoke(actor, requester="alice", resource="postgres:gone/t")
    elif what == "audit":
        d = engine.may_audit(actor)
    else:
        d = engine.may_introspect(actor)
    assert d.allowed is allowed, d
    assert d.reasons


def _catalog(engine: PolicyEngine, groups: list[str], now: datetime = WEDNESDAY_NOON, mfa: bool = False) -> dict:
    views = engine.catalog_for(Actor(sub="alice", groups=groups), now, mfa=mfa)
    return {(v.resource, a.action): a for v in views for a in v.actions}


def test_catalog_for_engineer(engine: PolicyEngine) -> None:
    seen = _catalog(engine, ENGINEER)
    assert set(seen) == {
        (ORDERS, "read"),
        (ORDERS, "write"),
        (CUSTOMERS, "read"),
        (LOGS, "read"),
        (STAGING, "read"),
        (STAGING, "write"),
    }
    assert (seen[ORDERS, "read"].max_duration_s, seen[ORDERS, "read"].approvals_required) == (3600, 1)
    write = seen[ORDERS, "write"]
    assert (write.max_duration_s, write.approvals_required, write.require_ticket) == (1800, 2, True)
    assert [s.name for s in write.stages] == ["db-owners", "data-owners"]
    assert seen[LOGS, "read"].max_duration_s == 3600 and seen[LOGS, "read"].auto_approve
    assert not seen[ORDERS, "read"].auto_approve and seen[ORDERS, "read"].break_glass_max_s == 0


def test_catalog_for_oncall_shows_auto_approval(engine: PolicyEngine) -> None:
    seen = _catalog(engine, ONCALL)
    assert (ORDERS, "write") not in seen
    read = seen[ORDERS, "read"]
    assert (read.max_duration_s, read.auto_approve, read.auto_approve_max_s) == (3600, True, 1800)
    assert seen[LOGS, "read"].max_duration_s == 14400
    assert not seen[CUSTOMERS, "read"].auto_approve


def test_catalog_for_contractor_and_nobody(engine: PolicyEngine) -> None:
    seen = _catalog(engine, CONTRACTOR)
    assert (CUSTOMERS, "read") not in seen
    assert {a.max_duration_s for a in seen.values()} == {900}
    assert _catalog(engine, []) == {}


def test_catalog_for_sre_break_glass_needs_mfa(engine: PolicyEngine) -> None:
    assert _catalog(engine, SRE) == {}
    seen = _catalog(engine, SRE, mfa=True)
    assert set(seen) == {(ORDERS, "read"), (ORDERS, "write"), (CUSTOMERS, "read")}
    assert seen[ORDERS, "write"].break_glass_max_s == 3600 and seen[ORDERS, "write"].max_duration_s == 0
    assert seen[CUSTOMERS, "read"].break_glass_max_s == 900


def test_catalog_for_weekend_hides_production_writes(engine: PolicyEngine) -> None:
    seen = _catalog(engine, ENGINEER, now=SATURDAY_NOON)
    assert (ORDERS, "write") not in seen and (STAGING, "write") in seen


@pytest.mark.parametrize(
    ("claims", "mfa"),
    [
        ({"amr": ["pwd", "otp"]}, True),
        ({"amr": ["hwk"]}, True),
        ({"amr": "mfa"}, True),
        ({"amr": ["pwd"]}, False),
        ({"acr": "http://schemas.openid.net/pape/policies/2007/06/multi-factor"}, True),
        ({"acr": "urn:mace:incommon:iap:bronze"}, False),
        ({}, False),
    ],
)
def test_mfa_from_claims(claims, mfa) -> None:
    assert mfa_from_claims(claims) is mfa
