"""The audit log's hash chain: one computation and one verifier for every store.

A record is sealed with the SHA-256 of every column a store keeps for it: its
position ``n``, ``event_id``, ``at``, ``body``, ``prev_hash`` and the hash
version itself (``v``). Editing any of them, removing or reordering records
breaks the chain at that record. What a chain alone cannot see (the newest
records cut off, or every record from an edit onwards re-sealed) is caught by
the anchors: heads of the chain that the audit anchor workflow keeps in
Temporal's history (workflows/audit_anchor.py), which the audit store's writer
cannot rewrite.

Hash versions. ``v=1`` records (written before ``v`` existed) hashed the
previous hash and the body only: they keep verifying, and since the body holds
the event id and the time, ``check_chain`` also requires the stored
``event_id`` and ``at`` columns to agree with it, so moving a v1 record's time
is caught as well. New records are ``v=2``. A record cannot be downgraded
unnoticed: ``v`` is inside the v2 hash, re-sealing a record as v1 changes its
hash (so every later record and any anchor past it disagree), and a v1 record
after a v2 record is refused.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from core.audit import AuditEvent

GENESIS = "0" * 64
LEGACY_VERSION = 1
HASH_VERSION = 2


def canonical_at(at: datetime) -> str:
    """One text for one instant, whatever form a store keeps it in (a naive time is UTC)."""
    moment = at.replace(tzinfo=UTC) if at.tzinfo is None else at
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def record_hash(prev_hash: str, body: str) -> str:
    """The v1 hash: previous hash and body only (records written before hash versions)."""
    return hashlib.sha256(f"{prev_hash}\n{body}".encode()).hexdigest()


def record_hash_v2(n: int, event_id: str, at: datetime, body: str, prev_hash: str) -> str:
    # A JSON array: no field can bleed into the next whatever characters it holds.
    sealed = json.dumps(
        ["jit-audit", HASH_VERSION, n, event_id, canonical_at(at), prev_hash, body],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(sealed.encode()).hexdigest()


@dataclass(frozen=True)
class Record:
    """One stored row, as every store reads it back."""

    n: int
    event_id: str
    at: datetime
    body: str
    prev_hash: str
    hash: str
    version: int


def seal(n: int, event: AuditEvent, prev_hash: str) -> Record:
    """The record a store appends for ``event`` at position ``n`` after ``prev_hash``."""
    body = event.model_dump_json()
    digest = record_hash_v2(n, event.event_id, event.at, body, prev_hash)
    return Record(n, event.event_id, event.at, body, prev_hash, digest, HASH_VERSION)


class ChainHead(BaseModel):
    """The newest record and how many there are (``n=0``, GENESIS, 0 for an empty log)."""

    n: int
    event_id: str
    hash: str
    count: int


class Anchor(BaseModel):
    """A head as the anchor workflow recorded it in Temporal."""

    head: ChainHead
    at: datetime | None = None
    workflow_id: str = ""


@dataclass(frozen=True)
class Broken:
    n: int
    event_id: str
    why: str


def _expected_hash(r: Record) -> str | None:
    if r.version == HASH_VERSION:
        return record_hash_v2(r.n, r.event_id, r.at, r.body, r.prev_hash)
    if r.version == LEGACY_VERSION:
        return record_hash(r.prev_hash, r.body)
    return None


def _disagrees_with_body(r: Record) -> str | None:
    try:
        body = json.loads(r.body)
        event_id, at = body["event_id"], datetime.fromisoformat(body["at"])
    except (ValueError, KeyError, TypeError):
        return "content is not JSON"
    if event_id != r.event_id:
        return "stored event id differs from its content"
    if canonical_at(at) != canonical_at(r.at):
        return "stored time differs from its content"
    return None


def check_chain(records: Iterable[Record], anchors: Sequence[Anchor] = ()) -> tuple[int, Broken | None]:
    """Walk the chain in order: (records that hold, the first that does not or None).

    With ``anchors``: each anchored record must still be there, at its position
    with its hash, and the log no shorter than any anchor saw it.
    """
    by_n: dict[int, list[Anchor]] = {}
    for anchor in anchors:
        if anchor.head.count:
            by_n.setdefault(anchor.head.n, []).append(anchor)
    prev, newest, checked = GENESIS, LEGACY_VERSION, 0
    for r in records:
        expected = _expected_hash(r)
        if expected is None:
            return checked, Broken(r.n, r.event_id, f"hash version {r.version} unknown (written by a newer jit?)")
        if r.version < newest:
            return checked, Broken(r.n, r.event_id, f"hash version {r.version} after version {newest}: downgraded")
        if r.prev_hash != prev:
            return checked, Broken(r.n, r.event_id, "does not follow the record before it")
        if expected != r.hash:
            return checked, Broken(r.n, r.event_id, "content does not match its hash")
        if (why := _disagrees_with_body(r)) is not None:
            return checked, Broken(r.n, r.event_id, why)
        checked += 1
        for anchor in by_n.pop(r.n, []):
            if anchor.head.hash != r.hash or anchor.head.count != checked:
                return checked, Broken(r.n, r.event_id, f"differs from {_described(anchor)}")
        prev, newest = r.hash, r.version
    for anchor in sorted((a for found in by_n.values() for a in found), key=lambda a: a.head.n):
        head = anchor.head
        return checked, Broken(
            head.n, head.event_id, f"missing: {_described(anchor)}, the log holds {checked} records that chain"
        )
    return checked, None


def _described(anchor: Anchor) -> str:
    when = f" of {anchor.at.isoformat()}" if anchor.at else ""
    where = f" (Temporal workflow {anchor.workflow_id})" if anchor.workflow_id else ""
    count = anchor.head.count
    return f"the anchor{when}{where}, which saw {count} record{'s' if count != 1 else ''} ending here"


class ChainedLog:
    """What both stores answer the same way, over their own ``records()`` and table."""

    TABLE: str

    def records(self) -> Iterator[Record]:
        raise NotImplementedError

    def _connect(self) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def head(self) -> ChainHead:
        """The newest record and the count, read in one statement (one snapshot)."""
        with self._connect() as db:
            row = db.execute(
                f"SELECT n, event_id, hash, (SELECT count(*) FROM {self.TABLE}) FROM {self.TABLE} "  # noqa: S608 - a class constant
                "ORDER BY n DESC LIMIT 1"
            ).fetchone()
        if row is None:
            return ChainHead(n=0, event_id="", hash=GENESIS, count=0)
        return ChainHead(n=row[0], event_id=row[1], hash=row[2], count=row[3])

    def verify(self, anchors: Sequence[Anchor] = ()) -> Broken | None:
        """Recompute the chain; the first record that does not hold, or None."""
        return self.check(anchors)[1]

    def check(self, anchors: Sequence[Anchor] = ()) -> tuple[int, Broken | None]:
        """Recompute the chain against ``anchors``: (records that hold, the first that does not or None)."""
        return check_chain(self.records(), anchors)
