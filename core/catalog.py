"""The resource catalog: which resources exist, their actions, limits and approvers.

Loaded at start-up by the API and by the policy engine (policy/). Its hash is part
of the policy version recorded on each request it decides.

The catalog says *what* can be asked for and *who approves*; the Cedar policies in
config/policies/ say *who may ask* and under which conditions. A resource either
lists approval ``stages`` or, as before, ``approvals_required`` from
``approver_groups`` (one stage); ``action_overrides`` refine one action.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, BeforeValidator, Field, ValidationError, field_validator, model_validator

from core import provisioners
from core.durations import DurationError, parse_duration
from core.models import ResourcePolicy
from core.provisioners.errors import ProvisionerConfigError


def _duration(value: object) -> int:
    try:
        return parse_duration(value)
    except DurationError as e:
        raise ValueError(f"duration {e}") from e


Seconds = Annotated[int, BeforeValidator(_duration)]
Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
LEGACY_STAGE = "approval"  # the name of the single stage built from approvals_required


class Stage(BaseModel):
    """One approval step: ``approvals`` distinct people from ``groups``, stages in order."""

    model_config = {"extra": "forbid"}

    name: Name
    groups: list[str] = Field(min_length=1)
    approvals: int = Field(default=1, ge=1, le=10)
    escalate_after: Seconds | None = None
    escalate_to: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _escalation_complete(self) -> Stage:
        # Half an escalation would silently do nothing: refuse it.
        if (self.escalate_after is None) != (not self.escalate_to):
            raise ValueError("escalate_after and escalate_to must be given together")
        return self


def _unique_stages(stages: list[Stage] | None) -> None:
    names = [s.name for s in stages or []]
    if len(names) != len(set(names)):
        raise ValueError("stage names must be unique")


class ActionOverride(BaseModel):
    """What differs for one action (e.g. writes need two stages and a ticket)."""

    model_config = {"extra": "forbid"}

    stages: list[Stage] | None = None
    max_duration: Seconds | None = None
    approval_timeout: Seconds | None = None
    require_ticket: bool | None = None

    @model_validator(mode="after")
    def _check(self) -> ActionOverride:
        _unique_stages(self.stages)
        return self


class ActionRules(BaseModel):
    """The catalog's rules for one action on one resource, overrides applied."""

    action: str
    max_duration_s: int
    approval_timeout_s: int
    require_reason: bool
    require_ticket: bool
    break_glass_max_s: int | None
    stages: list[Stage]


class CatalogEntry(BaseModel):
    model_config = {"extra": "forbid"}

    id: str = Field(min_length=1, max_length=200)
    description: str = ""
    actions: list[str] = Field(min_length=1)
    max_duration: Seconds
    approval_timeout: Seconds = 24 * 3600
    approvals_required: int = Field(default=1, ge=0, le=10)
    approver_groups: list[str] = Field(default_factory=list)
    # Attributes the Cedar policies see on the Resource entity. The defaults err on the
    # strict side: an entry that does not say otherwise is treated as production.
    kind: Name | None = None  # default: the id's prefix before ":" ("postgres:…" -> "postgres")
    environment: Name = "production"
    sensitivity: Name = "internal"
    require_reason: bool = True
    require_ticket: bool = False
    break_glass_max: Seconds | None = None  # None: no break-glass on this resource
    stages: list[Stage] | None = None
    action_overrides: dict[str, ActionOverride] = Field(default_factory=dict)
    # Approvals are bound to the exact request: with this on, extending an
    # approved grant waits for a new approval from the first stage's groups.
    reapprove_extensions: bool = False
    # How access is made real: {type: postgres | webhook | none, ...}. Secrets
    # only by the name of an environment variable (dsn_env, secret_env).
    provisioner: dict[str, Any] = Field(default_factory=dict)

    @field_validator("provisioner")
    @classmethod
    def _known_provisioner(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            provisioners.check(value)
        except ProvisionerConfigError as e:
            raise ValueError(str(e)) from e
        return value

    @model_validator(mode="after")
    def _consistent(self) -> CatalogEntry:
        if self.kind is None:
            self.kind = self.id.split(":", 1)[0] if ":" in self.id else "generic"
        if self.stages is None:
            if self.approvals_required and not self.approver_groups:
                raise ValueError("approvals_required > 0 needs at least one approver group")
        else:
            # Two ways to say the same thing would drift apart: allow one.
            if {"approvals_required", "approver_groups"} & self.model_fields_set:
                raise ValueError("give either stages or approvals_required/approver_groups, not both")
            _unique_stages(self.stages)
            # Derived so that policy_for and GET /v1/catalog keep working unchanged.
            self.approvals_required = sum(s.approvals for s in self.stages)
            self.approver_groups = list(dict.fromkeys(g for s in self.stages for g in s.groups))
        unknown = sorted(set(self.action_overrides) - set(self.actions))
        if unknown:
            raise ValueError(f"action_overrides for actions not offered: {', '.join(unknown)}")
        return self

    def rules(self, action: str) -> ActionRules:
        """The effective rules for ``action`` (which must be one of ``actions``)."""
        override = self.action_overrides.get(action) or ActionOverride()
        stages = override.stages if override.stages is not None else self.default_stages()
        return ActionRules(
            action=action,
            max_duration_s=override.max_duration or self.max_duration,
            approval_timeout_s=override.approval_timeout or self.approval_timeout,
            require_reason=self.require_reason,
            require_ticket=self.require_ticket if override.require_ticket is None else override.require_ticket,
            break_glass_max_s=self.break_glass_max,
            stages=stages,
        )

    def default_stages(self) -> list[Stage]:
        if self.stages is not None:
            return self.stages
        if not self.approvals_required:
            return []
        return [Stage(name=LEGACY_STAGE, groups=self.approver_groups, approvals=self.approvals_required)]


class _CatalogFile(BaseModel):
    model_config = {"extra": "forbid"}
    resources: list[CatalogEntry]


class CatalogError(Exception):
    """The catalog cannot be used; ``errors`` holds one ``path:line: message`` each."""

    def __init__(self, errors: list[str]):
        super().__init__("\n".join(errors))
        self.errors = errors


class Catalog:
    def __init__(
        self, entries: list[CatalogEntry], version: str, path: Path | None = None, lines: dict[str, int] | None = None
    ):
        self._entries = {e.id: e for e in entries}
        self.version = version
        # Where each resource was read from: for the messages of what is built from it.
        self.path = path
        self.lines = lines or {}

    def where(self, resource: str) -> str:
        line = self.lines.get(resource)
        return f"{self.path or 'catalog'}:{line}" if line else str(self.path or "catalog")

    @classmethod
    def load(cls, path: Path) -> Catalog:
        try:
            raw = path.read_bytes()
        except OSError as e:
            raise CatalogError([f"{path}: cannot read catalog: {e.strerror}"]) from e
        try:
            root = yaml.compose(raw)
            data = yaml.safe_load(raw) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
            raise CatalogError([f"{where}: not valid YAML: {getattr(e, 'problem', None) or e}"]) from e
        duplicates = _duplicate_keys(path, root)
        if duplicates:  # YAML would silently keep the last one: refuse instead
            raise CatalogError(duplicates)
        try:
            parsed = _CatalogFile.model_validate(data)
        except ValidationError as e:
            raise CatalogError([_located(path, root, err["loc"], err["msg"]) for err in e.errors()]) from e
        seen: set[str] = set()
        for i, entry in enumerate(parsed.resources):
            if entry.id in seen:
                raise CatalogError(
                    [_located(path, root, ("resources", i, "id"), f"duplicate resource id {entry.id!r}")]
                )
            seen.add(entry.id)
        items = root.value[0][1].value if isinstance(root, yaml.MappingNode) and root.value else []
        lines = {e.id: node.start_mark.line + 1 for e, node in zip(parsed.resources, items, strict=False)}
        return cls(parsed.resources, "sha256:" + hashlib.sha256(raw).hexdigest()[:16], path, lines)

    def get(self, resource: str) -> CatalogEntry | None:
        return self._entries.get(resource)

    def entries(self) -> list[CatalogEntry]:
        return list(self._entries.values())

    def policy_for(self, entry: CatalogEntry, *, admin_groups: list[str], ceiling_s: int) -> ResourcePolicy:
        # The pre-Cedar snapshot (the catalog alone). The API snapshots a policy decision
        # instead (api/decisions.py snapshot); kept for tools and tests that have no policies.
        return ResourcePolicy(
            approvals_required=entry.approvals_required,
            approver_groups=entry.approver_groups,
            max_duration_s=min(entry.max_duration, ceiling_s),
            approval_timeout_s=entry.approval_timeout,
            admin_groups=admin_groups,
            provisioner=entry.provisioner,
        )


def _duplicate_keys(path: Path, node: yaml.Node | None) -> list[str]:
    found: list[str] = []
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if key.value in seen:
                found.append(f"{path}:{key.start_mark.line + 1}: {key.value!r} is given twice")
            seen.add(key.value)
            found += _duplicate_keys(path, value)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            found += _duplicate_keys(path, item)
    return found


def _located(path: Path, root: yaml.Node | None, loc: tuple[Any, ...], msg: str) -> str:
    """``path:line: resources.0.max_duration: msg``, the line found by walking the YAML nodes."""
    node, line = root, (root.start_mark.line + 1 if root is not None else None)
    for part in loc:
        child = None
        if isinstance(node, yaml.MappingNode):
            child = next((v for k, v in node.value if k.value == part), None)
            if child is None:  # an unexpected key: point at the key itself
                child = next((k for k, _ in node.value if k.value == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            child = node.value[part]
        if child is None:
            continue  # pydantic adds non-path parts (e.g. "function-after[...]"); skip them
        node, line = child, child.start_mark.line + 1
    where = ".".join(str(p) for p in loc if not str(p).startswith("function-"))
    msg = msg.removeprefix("Value error, ")
    return f"{path}:{line}: {where}: {msg}" if line else f"{path}: {where}: {msg}"
