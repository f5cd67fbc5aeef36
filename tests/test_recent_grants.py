"""Introspection's short memory of grant rows (api/recent_grants.py): what it may hide, and for how long."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from api.recent_grants import RecentGrants
from core.grants import SqliteGrantStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_revoke_made_elsewhere_is_seen_within_the_ttl_and_one_made_here_at_once(tmp_path: Path) -> None:
    store = SqliteGrantStore(tmp_path / "grants.sqlite3")
    now = datetime.now(UTC)
    for rid in ("a", "b"):
        store.record(request_id=rid, requester="alice", resource="r", action="read", activated_at=now,
                     expires_at=now + timedelta(hours=1))  # fmt: skip
    clock = Clock()
    recent = RecentGrants(store, ttl_s=0.5, clock=clock)
    assert recent.lookup("a").revoked_at is None  # type: ignore[union-attr]
    assert recent.lookup("b").revoked_at is None  # type: ignore[union-attr]

    store.revoke("a")  # by the worker, or another API replica
    clock.now += 0.4
    assert recent.lookup("a").revoked_at is None  # type: ignore[union-attr]  # within the ttl: may still read live
    clock.now += 0.1
    assert recent.lookup("a").revoked_at is not None  # type: ignore[union-attr]  # never longer

    store.revoke("b")  # through this API: the service forgets the row once the revoke landed
    recent.forget("b")
    assert recent.lookup("b").revoked_at is not None  # type: ignore[union-attr]


def test_no_memory_with_a_zero_ttl(tmp_path: Path) -> None:
    store = SqliteGrantStore(tmp_path / "grants.sqlite3")
    now = datetime.now(UTC)
    store.record(request_id="a", requester="alice", resource="r", action="read", activated_at=now,
                 expires_at=now + timedelta(hours=1))  # fmt: skip
    recent = RecentGrants(store, ttl_s=0, clock=Clock())
    recent.lookup("a")
    store.revoke("a")
    assert recent.lookup("a").revoked_at is not None  # type: ignore[union-attr]
