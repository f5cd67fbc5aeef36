"""Read a policy directory: the schema, every ``*.cedar`` file, each policy's file and line.

Cedar reports parse errors without a position and validation errors by positional
policy id (``policy7``), so this module keeps its own map from policy to file and
line, and narrows an error down to a line by re-parsing prefixes. All problems
are collected, not just the first: a reviewer fixes them in one go.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any

import cedarpy
from cedarpy import pst

SCHEMA_FILE = "schema.cedarschema"
# Request fields a forbid may blame with @field("…"): what the API can name in a 422.
FIELDS = frozenset({"resource", "action", "duration", "reason", "ticket", "break_glass", "mfa", "start_at"})
_COMPARE = {"less", "less_eq", "greater", "greater_eq", "eq", "not_eq"}
_EOF = "unexpected end of input"
_NAMES = re.compile(r"`([^`]+)`")


class PolicyError(Exception):
    """The policies (or the catalog they are built with) cannot be used.

    ``errors`` holds one ``file:line: message`` per problem.
    """

    def __init__(self, errors: list[str]):
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class PolicyMeta:
    id: str  # the @id annotation
    effect: str  # "permit" or "forbid"
    reason: str  # the @reason annotation, or ""
    field: str | None  # the @field annotation
    file: str
    line: int
    text: str  # the statement, to build per-principal slices of the set from
    principal: tuple[str, str] | None  # ("Group", "sre") from `principal in …`; None: anyone
    breakpoints: tuple[int, ...] = ()  # the literals context.duration_s is compared with
    exact: bool = True  # False if duration_s is used other than compared with a literal

    def describe(self) -> str:
        verb = "permitted" if self.effect == "permit" else "forbidden"
        return f"{verb} by {self.id}: {self.reason}" if self.reason else f"{verb} by {self.id}"


@dataclass(frozen=True)
class _Statement:
    file: Path
    line: int  # 1-based line of the statement's first token
    text: str  # the statement's text, starting at the beginning of that line


@dataclass
class PolicySource:
    files: list[tuple[str, bytes]]  # (name, content): what the version hashes
    schema: cedarpy.Schema
    policy_set: cedarpy.PolicySet
    meta: dict[str, PolicyMeta]  # Cedar's positional id ("policy3") -> where and why, in order


def load_source(directory: Path) -> PolicySource:
    schema_path = directory / SCHEMA_FILE
    try:
        schema_text = schema_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise PolicyError([f"{schema_path}: cannot read schema: {getattr(e, 'strerror', None) or e}"]) from e
    try:
        schema = cedarpy.Schema.from_str(schema_text)
    except ValueError as e:
        line = _locate(schema_text, str(e), cedarpy.Schema.from_str)
        raise PolicyError([f"{schema_path}:{line}: {e}"]) from e

    files = [(SCHEMA_FILE, schema_text.encode())]
    statements: list[_Statement] = []
    errors: list[str] = []
    paths = sorted(directory.glob("*.cedar"))
    if not paths:
        raise PolicyError([f"{directory}: no *.cedar policy files"])
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            errors.append(f"{path}: cannot read: {getattr(e, 'strerror', None) or e}")
            continue
        files.append((path.name, text.encode()))
        found = _split(path, text)
        errors += _parse_errors(found, text)
        statements += found
    if errors:
        raise PolicyError(errors)

    combined = "\n".join(s.text for s in statements)
    policy_set = cedarpy.PolicySet.from_str(combined)
    tree = policy_set.to_pst()
    if tree.templates:  # linking is not wired anywhere: a template would silently permit nothing
        names = ", ".join(sorted(t.annotations.get("id", tid) for tid, t in tree.templates.items()))
        raise PolicyError([f"{directory}: templates (?principal/?resource slots) are not supported: {names}"])
    # Cedar numbers the policies in text order; the splitter must have seen the same ones.
    if len(tree.static_policies) != len(statements):
        raise PolicyError(
            [f"{directory}: found {len(statements)} statements but Cedar parsed {len(tree.static_policies)}"]
        )
    meta: dict[str, PolicyMeta] = {}
    seen: dict[str, _Statement] = {}
    for i, stmt in enumerate(statements):
        policy = tree.static_policies[f"policy{i}"]
        where = f"{stmt.file}:{stmt.line}"
        pid = policy.annotations.get("id")
        if not pid:
            errors.append(f'{where}: every policy needs an @id("…") annotation: decisions are explained by it')
            continue
        if pid in seen:
            errors.append(f"{where}: @id {pid!r} is already used at {seen[pid].file}:{seen[pid].line}")
        seen[pid] = stmt
        field = policy.annotations.get("field")
        if field is not None and field not in FIELDS:
            errors.append(f"{where}: @field {field!r} is not one of {', '.join(sorted(FIELDS))}")
        reason = policy.annotations.get("reason", "")
        breakpoints, exact = _duration_breakpoints(policy)
        meta[f"policy{i}"] = PolicyMeta(
            pid,
            policy.effect,
            reason,
            field,
            str(stmt.file),
            stmt.line,
            stmt.text,
            _principal(policy),
            breakpoints,
            exact,
        )

    result = cedarpy.validate_policies(combined, schema)
    for err in result.errors:
        index = int(err.policy_id.removeprefix("policy")) if err.policy_id.startswith("policy") else -1
        message = re.sub(r"^for policy `policy\d+`, ", "", err.error)
        if 0 <= index < len(statements):
            stmt = statements[index]
            line = stmt.line + _line_naming(stmt.text, message)
            label = meta[err.policy_id].id if err.policy_id in meta else f"#{index}"
            errors.append(f"{stmt.file}:{line}: policy {label} does not fit {SCHEMA_FILE}: {message}")
        else:
            errors.append(f"{directory}: {message}")
    if errors:
        raise PolicyError(errors)
    return PolicySource(files, schema, policy_set, meta)


def _split(path: Path, text: str) -> list[_Statement]:
    """Cut a file at each ``;`` outside strings and comments; a tail without ``;`` is kept."""
    statements: list[_Statement] = []
    start, first, i, n = 0, None, 0, len(text)
    while i < n:
        c = text[i]
        if c == "/" and text.startswith("//", i):
            i = text.find("\n", i)
            i = n if i < 0 else i
            continue
        if not c.isspace() and first is None:
            first = i
        if c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif c == ";":
            statements.append(_statement(path, text, start, first, i + 1))
            start, first = i + 1, None
        i += 1
    if first is not None:
        statements.append(_statement(path, text, start, first, n))
    return statements


def _statement(path: Path, text: str, start: int, first: int | None, end: int) -> _Statement:
    first = start if first is None else first
    line_start = text.rfind("\n", 0, first) + 1
    # Keep whole lines so that line numbers inside the statement are the file's.
    return _Statement(path, text.count("\n", 0, first) + 1, text[max(line_start, start) : end])


def _parse_errors(statements: list[_Statement], text: str) -> list[str]:
    try:
        cedarpy.PolicySet.from_str(text)
        return []
    except ValueError:
        pass  # find which statements, and where
    errors = []
    for stmt in statements:
        try:
            cedarpy.PolicySet.from_str(stmt.text)
        except ValueError as e:
            line = stmt.line + _locate(stmt.text, str(e), cedarpy.PolicySet.from_str) - 1
            errors.append(f"{stmt.file}:{line}: {e}")
    return errors


def _locate(text: str, message: str, parse: Any) -> int:
    """The 1-based line where ``text`` goes wrong: the first prefix of whole lines that
    already fails with ``message``; else the first line naming what the message names."""
    lines = text.splitlines(keepends=True)
    if message != _EOF:
        for k in range(1, len(lines)):
            try:
                parse("".join(lines[:k]))
            except ValueError as e:
                if str(e) == message:
                    return k
    return 1 + _line_naming(text, message)


def _line_naming(text: str, message: str) -> int:
    """0-based offset of the first line of ``text`` that names a `quoted` word of ``message``
    (or, for "failed to resolve type: X", X); 0 if none does."""
    names = _NAMES.findall(message)
    names += [n.strip() for n in re.findall(r"resolve types?: (.+)$", message)[:1] for n in n.split(",")]
    for name in names:
        short = name.split("::")[-1].strip('"')
        if not short:
            continue
        pattern = re.compile(rf"(?<![\w]){re.escape(short)}(?![\w])")
        for offset, line in enumerate(text.splitlines()):
            if pattern.search(line.split("//", 1)[0]):
                return offset
    return 0


def _is_duration(node: Any) -> bool:
    return (
        isinstance(node, pst.GetAttr)
        and node.attr == "duration_s"
        and isinstance(node.base, pst.Var)
        and node.base.name == "context"
    )


def _principal(policy: Any) -> tuple[str, str] | None:
    """The one user or group a policy's principal scope names (None: any principal)."""
    scope = policy.principal
    entity = getattr(scope, "entity", None)  # ScopeEq, ScopeIn, ScopeIsIn; not ScopeAny, ScopeIs
    return (entity.type.basename, entity.id) if isinstance(entity, pst.EntityUid) else None


def _duration_breakpoints(policy: Any) -> tuple[tuple[int, ...], bool]:
    """Every literal ``context.duration_s`` is compared with, and whether that is all it is used for.

    A decision can only change where such a comparison flips, so the largest
    permitted duration is the catalog maximum or one of ``c`` and ``c - 1``.
    """
    found: set[int] = set()
    uses = compared = 0
    stack: list[Any] = [policy]
    while stack:
        node = stack.pop()
        if _is_duration(node):
            uses += 1
        elif isinstance(node, pst.BinaryOp) and node.op in _COMPARE:
            for mine, other in ((node.left, node.right), (node.right, node.left)):
                if _is_duration(mine) and isinstance(other, pst.LongLit):
                    found.add(other.value)
                    compared += 1
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, tuple):
            stack.extend(node)
        elif is_dataclass(node) and not isinstance(node, type):
            stack.extend(getattr(node, f.name) for f in fields(node))
    return tuple(sorted(found)), uses == compared
