"""``jit policy check [DIR]``: validate the policies and the catalog as the API would load them.

Prints every problem as ``file:line: message`` and exits 1 if there is any, so it
can gate a pull request that edits config/policies/ or config/catalog.yaml.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.catalog import Catalog
from policy.engine import PolicyEngine
from policy.loader import load_engine
from policy.source import PolicyError, load_source

DEFAULT_DIR = Path("config/policies")


def default_catalog(policies_dir: Path) -> Path | None:
    """The catalog beside the policies (config/catalog.yaml for config/policies), if there is one."""
    candidate = policies_dir.parent / "catalog.yaml"
    return candidate if candidate.is_file() else None


def build(policies_dir: Path, catalog_path: Path | None) -> PolicyEngine:
    if catalog_path is None:
        # No catalog: the policies alone, against the schema and an empty catalog.
        return PolicyEngine(load_source(policies_dir), Catalog([], "none"))
    return load_engine(policies_dir, catalog_path)


def check(policies_dir: Path, catalog_path: Path | None = None) -> list[str]:
    """Every problem found, as ``file:line: message``; [] when the API would load these files.

    Without ``catalog_path``, the catalog beside the directory if there is one, else none."""
    try:
        build(Path(policies_dir), catalog_path or default_catalog(Path(policies_dir)))
    except PolicyError as e:
        return e.errors
    return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jit policy check", description=__doc__.splitlines()[0])
    parser.add_argument(
        "dir", nargs="?", type=Path, default=DEFAULT_DIR, help="policy directory (default: %(default)s)"
    )
    parser.add_argument("--catalog", type=Path, default=None, help="catalog file (default: DIR/../catalog.yaml)")
    args = parser.parse_args(argv)
    catalog = args.catalog or default_catalog(args.dir)
    try:
        engine = build(args.dir, catalog)
    except PolicyError as e:
        for error in e.errors:
            print(error, file=sys.stderr)
        print(f"{len(e.errors)} problem(s)", file=sys.stderr)
        return 1
    print(f"ok: {engine.policy_count} policies, {len(engine.catalog.entries())} resources, version {engine.version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
