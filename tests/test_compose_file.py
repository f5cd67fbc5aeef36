"""docker-compose.yml, checked as a file: there is no Docker engine here to run it.

What can drift without anyone running it: a ``JIT_*`` name the settings class no
longer knows (silently ignored: ``extra="ignore"``), an image that floats, a service
nobody health-checks, a volume that replicas would share, Temporal UI allowed to
terminate workflows, a search attribute the workflow upserts but nobody registers.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.settings import Settings
from core.temporal import SEARCH_ATTRIBUTES

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
SETTING_NAMES = {f"JIT_{name.upper()}" for name in Settings.model_fields}
# Services that run to completion (restart "no"): no health check to keep.
ONE_SHOT = {name for name, svc in SERVICES.items() if svc.get("restart") == "no"}
REPLICATED = {"api", "worker"}


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # the "NAME=value" form
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _jit_names() -> set[str]:
    names = {name for svc in SERVICES.values() for name in _environment(svc) if name.startswith("JIT_")}
    # Commented-out examples in the file are settings people will uncomment.
    text = (ROOT / "docker-compose.yml").read_text()
    names |= set(re.findall(r"^\s*#\s*(JIT_[A-Z0-9_]+):", text, re.MULTILINE))
    return names


def _default(image: str) -> str:
    """``name:${VAR:-tag}`` as Compose resolves it with VAR unset."""
    return re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", image)


def test_the_api_and_the_worker_set_the_settings_the_deployment_needs() -> None:
    """A sanity check on the parser: the names below are what makes the stack stateless."""
    api, worker = _environment(SERVICES["api"]), _environment(SERVICES["worker"])
    for env in (api, worker):
        assert {"JIT_DATABASE_URL", "JIT_CODEC_KEYS", "JIT_PG_PASSWORD_SECRET", "JIT_TEMPORAL_ADDRESS"} <= env.keys()
    assert {"JIT_SIGNING_KEYS_PATH", "JIT_SIGNING_KEY_ID", "JIT_UI_SESSION_SECRET"} <= api.keys()
    assert api["JIT_DEV_IDENTITY"] == "false"


@pytest.mark.parametrize("name", sorted(_jit_names()))
def test_every_jit_name_is_a_setting(name: str) -> None:
    assert name in SETTING_NAMES, f"{name} is not a field of core.settings.Settings: it would be ignored"


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_image_is_pinned(service: str) -> None:
    image = SERVICES[service].get("image")
    assert image, f"{service}: no image (a built image needs a tag too, for rollbacks)"
    resolved = _default(image)
    assert "${" not in resolved, f"{service}: {image} has no default version"
    if "@sha256:" in resolved:
        return
    name, _, tag = resolved.rpartition(":")
    assert name and "/" not in tag, f"{service}: {image} has no tag"
    assert tag != "latest", f"{service}: {image} floats"
    assert re.fullmatch(r"\d+\.\d+(\.\d+)?([.-][\w.-]+)?", tag), (
        f"{service}: {tag} is not a version (major.minor at least)"
    )


@pytest.mark.parametrize("service", sorted(set(SERVICES) - ONE_SHOT))
def test_every_long_running_service_has_a_health_check(service: str) -> None:
    check = SERVICES[service].get("healthcheck") or {}
    assert check.get("test") and not check.get("disable"), f"{service}: no health check"


def test_no_volume_is_shared_by_replicas() -> None:
    """Named volumes and bind mounts alike; a read-only secret is not a volume."""
    mounts: dict[str, list[str]] = {}
    for name, svc in SERVICES.items():
        for volume in svc.get("volumes") or []:
            source = volume["source"] if isinstance(volume, dict) else str(volume).split(":", 1)[0]
            mounts.setdefault(source, []).append(name)
    for source, users in mounts.items():
        assert not (REPLICATED & set(users)), f"volume {source} is mounted by {users}: replicas must share no disk"
        assert len(users) == 1, f"volume {source} is shared by {users}"


def test_the_api_replicas_are_reached_only_through_the_proxy() -> None:
    assert "ports" not in SERVICES["api"], "a published port per replica bypasses the proxy (and clashes when scaled)"
    assert any(p.split(":")[-2:] == ["8000", "8000"] for p in SERVICES["proxy"].get("ports", []))
    assert "reverse_proxy" in COMPOSE["configs"]["caddyfile"]["content"]


def test_temporal_ui_is_read_only_and_decodes_through_the_codec_endpoint() -> None:
    env = _environment(SERVICES["temporal-ui"])
    assert env.get("TEMPORAL_DISABLE_WRITE_ACTIONS") == "true", "an operator could terminate a request there"
    assert _default(env.get("TEMPORAL_CODEC_ENDPOINT", "")).endswith("/codec")


def test_every_search_attribute_is_registered() -> None:
    script = "\n".join(SERVICES["search-attributes"]["command"])
    kinds = {"KEYWORD": "Keyword", "KEYWORD_LIST": "KeywordList", "DATETIME": "Datetime", "BOOL": "Bool"}
    for key in SEARCH_ATTRIBUTES:
        wanted = f"--name {key.name} --type {kinds[key.indexed_value_type.name]}"
        assert wanted in script, f"{key.name} is not registered (as {kinds[key.indexed_value_type.name]})"
    depends = SERVICES["api"]["depends_on"]
    assert depends["search-attributes"]["condition"] == "service_completed_successfully"


def test_the_grant_store_and_audit_log_have_their_own_database() -> None:
    url = _environment(SERVICES["worker"])["JIT_DATABASE_URL"]
    assert re.fullmatch(r"postgresql://jit:\$\{[A-Z_]+:\?[^}]*\}@postgresql:5432/jit", url)
    init = COMPOSE["configs"]["access-db-init"]["content"]
    assert "CREATE DATABASE jit OWNER jit" in init
