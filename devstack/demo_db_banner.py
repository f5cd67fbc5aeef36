"""What ``make demo-db`` prints: the DSN to export for the catalog's postgres provisioners, and psql.

The catalog is read as plain YAML, only to name its ``dsn_env`` variables and
to say which of ``host``, ``port`` and ``dbname`` would miss the demo database;
the API and the worker validate it.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from devstack.demo_db_names import ADMIN, DBNAME, EXAMPLE_DSN_ENV, EXAMPLE_RESOURCE, HOST, admin_dsn


@dataclass
class CatalogTarget:
    resource: str
    dsn_env: str
    # key -> (what the catalog says, what it should say): host, port and dbname that differ
    mismatches: dict[str, tuple[Any, Any]] = field(default_factory=dict)


def catalog_targets(path: Path, port: int) -> list[CatalogTarget]:
    """The catalog's postgres provisioners, with the host, port or dbname that would miss this database."""
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return []  # the API reports a broken catalog; here it only means "nothing to match"
    found = []
    for resource in doc.get("resources") or []:
        block = resource.get("provisioner") if isinstance(resource, dict) else None
        if not isinstance(block, dict) or block.get("type") != "postgres" or not block.get("dsn_env"):
            continue
        target = CatalogTarget(str(resource.get("id")), str(block["dsn_env"]))
        # Absent keys come from the DSN, which points here; present ones must too.
        for key, want in (("host", HOST), ("port", port), ("dbname", DBNAME)):
            have = block.get(key)
            if have is not None and str(have) != str(want) and not (key == "host" and have == "localhost"):
                target.mismatches[key] = (have, want)
        found.append(target)
    return found


def banner(port: int, password: str, data_dir: Path, targets: list[CatalogTarget], psql: Path) -> list[str]:
    dsn = admin_dsn(port, password)
    where = os.path.relpath(data_dir) if data_dir.is_relative_to(Path.cwd()) else str(data_dir)
    lines = [
        "",
        f"  PostgreSQL     {HOST}:{port}, database {DBNAME} (public.orders, public.customers), admin role {ADMIN}",
        f"  Data           {where}      (kept between runs; delete it for a fresh database)",
        "",
    ]
    if targets:
        lines.append("  Export the admin DSN in the terminal where you then start make run:")
        lines += [f"    export {t.dsn_env}={shlex.quote(dsn)}" for t in targets]
        for t in targets:
            for key, (have, want) in t.mismatches.items():
                lines.append(f"  and in the catalog, {t.resource}'s provisioner: {key}: {have} -> {key}: {want}")
    else:
        lines += [
            "  The catalog has no postgres provisioner yet: add this to the resource",
            f"  {EXAMPLE_RESOURCE} in config/catalog.yaml:",
            "    provisioner:",
            "      type: postgres",
            f"      dsn_env: {EXAMPLE_DSN_ENV}",
            "      tables: [public.orders]",
            f"      host: {HOST}",
            f"      port: {port}",
            f"      dbname: {DBNAME}",
            "  then, in the terminal where you start make run:",
            f"    export {EXAMPLE_DSN_ENV}={shlex.quote(dsn)}",
        ]
    lines += [
        "",
        "  psql (from the pgserver wheel), as the admin:",
        f"    {shlex.quote(str(psql))} {shlex.quote(dsn)}",
        "  as a granted request: jit token ID --psql",
        "",
        "  Ctrl-C stops it.",
        "",
    ]
    return lines
