"""The resource catalog: which resources exist, their actions, limits and approvers.

Loaded once at start-up by the API (and later by the policy engine). Its hash is
the policy version recorded on each request it decides.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, BeforeValidator, Field, ValidationError, model_validator

from core.durations import DurationError, parse_duration
from core.models import ResourcePolicy


def _duration(value: object) -> int:
    try:
        return parse_duration(value)
    except DurationError as e:
        raise ValueError(f"duration {e}") from e


Seconds = Annotated[int, BeforeValidator(_duration)]


class CatalogEntry(BaseModel):
    model_config = {"extra": "forbid"}

    id: str = Field(min_length=1, max_length=200)
    description: str = ""
    actions: list[str] = Field(min_length=1)
    max_duration: Seconds
    approval_timeout: Seconds = 24 * 3600
    approvals_required: int = Field(default=1, ge=0, le=10)
    approver_groups: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _approvers_exist(self) -> CatalogEntry:
        if self.approvals_required and not self.approver_groups:
            raise ValueError("approvals_required > 0 needs at least one approver group")
        return self


class _CatalogFile(BaseModel):
    model_config = {"extra": "forbid"}
    resources: list[CatalogEntry]


class CatalogError(Exception):
    pass


class Catalog:
    def __init__(self, entries: list[CatalogEntry], version: str):
        self._entries = {e.id: e for e in entries}
        self.version = version

    @classmethod
    def load(cls, path: Path) -> Catalog:
        try:
            raw = path.read_bytes()
        except OSError as e:
            raise CatalogError(f"{path}: cannot read catalog: {e.strerror}") from e
        try:
            parsed = _CatalogFile.model_validate(yaml.safe_load(raw) or {})
        except yaml.YAMLError as e:
            raise CatalogError(f"{path}: not valid YAML: {e}") from e
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise CatalogError(f"{path}: {where}: {first['msg']}") from e
        ids = [e.id for e in parsed.resources]
        if len(ids) != len(set(ids)):
            raise CatalogError(f"{path}: resource ids must be unique")
        return cls(parsed.resources, "sha256:" + hashlib.sha256(raw).hexdigest()[:16])

    def get(self, resource: str) -> CatalogEntry | None:
        return self._entries.get(resource)

    def entries(self) -> list[CatalogEntry]:
        return list(self._entries.values())

    def policy_for(self, entry: CatalogEntry, *, admin_groups: list[str], ceiling_s: int) -> ResourcePolicy:
        return ResourcePolicy(
            approvals_required=entry.approvals_required,
            approver_groups=entry.approver_groups,
            max_duration_s=min(entry.max_duration, ceiling_s),
            approval_timeout_s=entry.approval_timeout,
            admin_groups=admin_groups,
        )
