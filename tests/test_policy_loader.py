"""Loading policies: errors name file and line, reloads keep the last good engine,
the version follows the files, and ``jit policy check`` reports what the API would."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.catalog import Catalog, CatalogError
from core.models import Actor
from policy import PolicyError, PolicyHolder, load_engine
from policy.check import check, main

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
ORDERS = "postgres:orders/public.orders"


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path]:
    """A private copy of the example policies and catalog, free to break."""
    policies = tmp_path / "policies"
    shutil.copytree(ROOT / "config/policies", policies)
    catalog = tmp_path / "catalog.yaml"
    shutil.copy(ROOT / "config/catalog.yaml", catalog)
    return policies, catalog


def errors_of(policies: Path, catalog: Path) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        load_engine(policies, catalog)
    return caught.value.errors


def line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def touch_later(path: Path) -> None:
    # Some file systems keep mtimes in whole seconds: make the change visible.
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))


def test_example_loads_and_checks_clean() -> None:
    engine = load_engine(ROOT / "config/policies", ROOT / "config/catalog.yaml")
    assert engine.version.startswith("sha256:") and len(engine.version) == len("sha256:") + 16
    assert engine.policy_count >= 10
    assert check(ROOT / "config/policies", ROOT / "config/catalog.yaml") == []


def test_syntax_error_names_file_and_line(setup) -> None:
    policies, catalog = setup
    path = policies / "request.cedar"
    path.write_text(path.read_text().replace("context.duration_s <= 900 &&", "context.duration_s <= &&"))
    errors = errors_of(policies, catalog)
    assert errors == [f"{path}:{line_of(path, 'duration_s <= &&')}: unexpected token `&&`"]


def test_missing_semicolon_at_end_of_file(setup) -> None:
    policies, catalog = setup
    path = policies / "zz.cedar"
    path.write_text('// a comment\n\n@id("half")\npermit (principal, action, resource)\n')
    [error] = errors_of(policies, catalog)
    assert error.startswith(f"{path}:3: ")  # the statement that never ended


def test_schema_violation_is_caught_at_its_line(setup) -> None:
    policies, catalog = setup
    path = policies / "request.cedar"
    path.write_text(path.read_text().replace('resource.kind == "postgres"', 'resource.owner == "postgres"'))
    [error] = errors_of(policies, catalog)
    assert error.startswith(f"{path}:{line_of(path, 'resource.owner')}: policy engineers-write does not fit")
    assert "`owner`" in error


def test_unknown_action_and_bad_annotations_all_reported(setup) -> None:
    policies, catalog = setup
    path = policies / "extra.cedar"
    path.write_text(
        'permit (principal, action == Jit::Action::"audit", resource);\n'
        '@id("auditors-audit")\npermit (principal, action == Jit::Action::"audit", resource);\n'
        '@id("typo") @field("colour")\nforbid (principal, action == Jit::Action::"aprove", resource);\n'
    )
    errors = errors_of(policies, catalog)
    assert f"{path}:1: every policy needs an @id" in errors[0]
    assert any(
        e.startswith(f"{path}:2: @id 'auditors-audit' is already used at {policies / 'admin.cedar'}:") for e in errors
    )
    assert any(e.startswith(f"{path}:4: @field 'colour'") for e in errors)
    assert any(e.startswith(f"{path}:5: policy typo does not fit") and "aprove" in e for e in errors)


def test_schema_error_names_schema_line(setup) -> None:
    policies, catalog = setup
    schema = policies / "schema.cedarschema"
    schema.write_text(
        schema.read_text().replace("    hour: Long,           // 0..23", "    hour: Lonk,           // 0..23")
    )
    [error] = errors_of(policies, catalog)
    assert error.startswith(f"{schema}:{line_of(schema, 'Lonk')}: ")


def test_catalog_that_does_not_fit_the_schema(setup) -> None:
    policies, catalog = setup
    schema = policies / "schema.cedarschema"
    schema.write_text(schema.read_text().replace("    kind: String,", "    kind: String,\n    owner: String,"))
    [error] = errors_of(policies, catalog)
    assert error.startswith(f"{catalog}:{line_of(catalog, '- id: ' + ORDERS)}: resource {ORDERS!r} does not fit")


def test_invalid_catalog_names_line(setup) -> None:
    policies, catalog = setup
    text = catalog.read_text().replace("        max_duration: 30m\n", "        max_duration: forever\n")
    catalog.write_text(text)
    [error] = errors_of(policies, catalog)
    assert error.startswith(
        f"{catalog}:{line_of(catalog, 'forever')}: resources.0.action_overrides.write.max_duration: "
    )


@pytest.mark.parametrize(
    ("entry", "where", "message"),
    [
        ("stages: [{name: a, groups: [g]}]\n    approvals_required: 1", "2: resources.0", "give either stages"),
        (
            "stages: [{name: a, groups: [g], escalate_after: 5m}]",
            "5: resources.0.stages.0",
            "escalate_after and escalate_to",
        ),
        ("stages: [{name: a, groups: [g]}, {name: a, groups: [h]}]", "2: resources.0", "stage names must be unique"),
        (
            "approvals_required: 0\n    action_overrides: {write: {max_duration: 5m}}",
            "2: resources.0",
            "not offered: write",
        ),
        ("approvals_required: 1", "2: resources.0", "needs at least one approver group"),
        ("approvals_required: 0\n    max_duration: 2h", "6: ", "'max_duration' is given twice"),
        # The provisioner block is checked as the worker will read it, naming the field.
        ("provisioner: {type: ftp}", "5: resources.0.provisioner", "type must be one of none, postgres, webhook"),
        ("provisioner: {type: postgres, dsn_env: X}", "5: resources.0.provisioner", "postgres provisioner: tables"),
        (
            "provisioner: {type: webhook, url: 'https://u:p@h/x', secret_env: S}",
            "5: resources.0.provisioner",
            "webhook provisioner: url: must not carry credentials",
        ),
    ],
)
def test_catalog_rules(tmp_path: Path, entry: str, where: str, message: str) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text(f"resources:\n  - id: x:y\n    actions: [read]\n    max_duration: 1h\n    {entry}\n")
    with pytest.raises(CatalogError) as caught:
        Catalog.load(path)
    assert caught.value.errors[0].startswith(f"{path}:{where}")
    assert message in caught.value.errors[0]


def test_legacy_catalog_still_loads() -> None:
    catalog = Catalog.load(ROOT / "tests/catalog.yaml")
    orders = catalog.get(ORDERS)
    assert orders is not None and orders.environment == "production" and orders.kind == "postgres"
    assert [(s.name, s.approvals, s.groups) for s in orders.rules("read").stages] == [("approval", 1, ["db-owners"])]
    assert catalog.get("k8s:prod/logs").rules("read").stages == []
    policy = catalog.policy_for(orders, admin_groups=["jit-admins"], ceiling_s=3600)
    assert (policy.approvals_required, policy.max_duration_s) == (1, 3600)


def test_stages_derive_legacy_fields() -> None:
    customers = Catalog.load(ROOT / "config/catalog.yaml").get("postgres:orders/public.customers")
    assert (customers.approvals_required, customers.approver_groups) == (2, ["privacy", "db-owners"])


def test_broken_reload_keeps_last_good_engine(setup) -> None:
    policies, catalog = setup
    holder = PolicyHolder(policies, catalog)
    good = holder.engine
    path = policies / "approve.cedar"
    original = path.read_text()
    path.write_text(original + "\nforbid (principal, action, resource")
    touch_later(path)
    assert holder.changed()
    errors = holder.reload_if_changed()
    assert errors and errors[0].startswith(f"{path}:")
    assert holder.engine is good and holder.last_errors == errors
    assert not holder.changed()  # the broken files are not retried on every call
    bob = Actor(sub="bob", groups=["db-owners"])
    decision = holder.engine.may_approve(
        bob, requester="alice", resource=ORDERS, action="read", duration_s=60, stage="approval", mfa=True, now=NOW
    )
    assert decision.allowed  # still deciding, by the last good rules
    path.write_text(original)
    touch_later(path)
    assert holder.reload_if_changed() == []
    assert holder.engine is not good and holder.version == good.version  # same files, same version


def test_first_load_failure_raises(setup) -> None:
    policies, catalog = setup
    (policies / "schema.cedarschema").unlink()
    with pytest.raises(PolicyError) as caught:
        PolicyHolder(policies, catalog)
    assert "cannot read schema" in caught.value.errors[0]


def test_version_follows_policies_and_catalog(setup) -> None:
    policies, catalog = setup
    holder = PolicyHolder(policies, catalog)
    v1 = holder.version
    assert holder.reload() == [] and holder.version == v1  # reload without a change: same version
    path = policies / "request.cedar"
    path.write_text(path.read_text().replace("context.duration_s <= 900", "context.duration_s <= 600"))
    assert holder.reload() == []
    v2 = holder.version
    assert v2 != v1
    contractor = Actor(sub="c", groups=["contractors"])
    decision = holder.engine.decide_request(
        contractor,
        resource=ORDERS,
        action="read",
        duration_s=600,
        reason="r",
        ticket=None,
        break_glass=False,
        mfa=False,
        now=NOW,
    )
    assert decision.max_duration_s == 600 and decision.policy_version == v2
    catalog.write_text(
        catalog.read_text().replace("description: Orders table of the orders database", "description: Orders")
    )
    assert holder.reload() == [] and holder.version not in (v1, v2)


def test_exact_cap_for_odd_literals_and_grid_otherwise(setup) -> None:
    policies, catalog = setup
    path = policies / "request.cedar"
    path.write_text(path.read_text().replace("context.duration_s <= 900", "context.duration_s <= 1234"))
    engine = load_engine(policies, catalog)
    contractor = Actor(sub="c", groups=["contractors"])
    ask = dict(resource=ORDERS, action="read", reason="r", ticket=None, break_glass=False, mfa=False, now=NOW)
    assert engine.decide_request(contractor, duration_s=60, **ask).max_duration_s == 1234  # exact, to the second
    # duration_s in arithmetic: no exact breakpoints, the cap is found on a grid (here 60 s steps).
    path.write_text(path.read_text().replace("context.duration_s <= 1234", "context.duration_s * 2 <= 2500"))
    engine = load_engine(policies, catalog)
    decision = engine.decide_request(contractor, duration_s=60, **ask)
    assert decision.allowed and decision.max_duration_s == 1200


def test_check_main_exit_codes(setup, capsys) -> None:
    policies, catalog = setup
    assert main([str(policies), "--catalog", str(catalog)]) == 0
    assert "ok:" in capsys.readouterr().out
    (policies / "bad.cedar").write_text('@id("b")\npermit (principal, action, resource) when { context.x };\n')
    assert main([str(policies)]) == 1  # the catalog beside the directory is found
    err = capsys.readouterr().err
    assert f"{policies / 'bad.cedar'}:2: policy b does not fit" in err
