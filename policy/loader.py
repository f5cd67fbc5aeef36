"""Load the policies and the catalog into an engine, and swap engines on reload.

The API keeps one PolicyHolder: it builds an engine at start-up (and refuses to
start if that fails), then ``reload()``s on SIGHUP or when ``changed()`` sees new
mtimes. A reload that fails keeps the last good engine and hands the errors back:
a typo in a policy must never leave the service without rules.
"""

from __future__ import annotations

import threading
from pathlib import Path

from core.catalog import Catalog, CatalogError
from policy.engine import PolicyEngine
from policy.source import PolicyError, load_source


def load_engine(policies_dir: Path, catalog_path: Path) -> PolicyEngine:
    """Build an engine, or raise PolicyError listing every problem as ``file:line: message``."""
    errors: list[str] = []
    catalog = None
    try:
        catalog = Catalog.load(catalog_path)
    except CatalogError as e:
        errors += e.errors
    try:
        source = load_source(policies_dir)
    except PolicyError as e:
        errors += e.errors
        source = None
    if errors or catalog is None or source is None:
        raise PolicyError(errors)
    return PolicyEngine(source, catalog)


def _fingerprint(policies_dir: Path, catalog_path: Path) -> tuple:
    # (name, mtime_ns, size) of every file an engine is built from; cheap enough per request.
    paths = [catalog_path, *sorted(policies_dir.glob("*.cedar")), *sorted(policies_dir.glob("*.cedarschema"))]
    facts = []
    for path in paths:
        try:
            st = path.stat()
            facts.append((str(path), st.st_mtime_ns, st.st_size))
        except OSError:
            facts.append((str(path), None, None))
    return tuple(facts)


class PolicyHolder:
    def __init__(self, policies_dir: Path, catalog_path: Path):
        self.policies_dir = Path(policies_dir)
        self.catalog_path = Path(catalog_path)
        self._lock = threading.Lock()
        self._seen = _fingerprint(self.policies_dir, self.catalog_path)
        self._engine = load_engine(self.policies_dir, self.catalog_path)  # no good engine yet: raise
        self.last_errors: list[str] = []

    @property
    def engine(self) -> PolicyEngine:
        return self._engine

    @property
    def version(self) -> str:
        return self._engine.version

    def changed(self) -> bool:
        return _fingerprint(self.policies_dir, self.catalog_path) != self._seen

    def reload(self) -> list[str]:
        """Build a new engine from the files; [] if it is now current, else the errors
        (and the previous engine stays current)."""
        with self._lock:
            # Remember what was tried even when it fails: reload_if_changed must not
            # rebuild (and log) the same broken files on every call.
            self._seen = _fingerprint(self.policies_dir, self.catalog_path)
            try:
                self._engine = load_engine(self.policies_dir, self.catalog_path)
            except PolicyError as e:
                self.last_errors = e.errors
                return e.errors
            self.last_errors = []
            return []

    def reload_if_changed(self) -> list[str]:
        return self.reload() if self.changed() else []
