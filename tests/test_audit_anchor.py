"""The audit log's anchors (workflows/audit_anchor.py, core/audit_anchors.py) and the full-column chain.

Against a real Temporal dev server and both stores (a SQLite file, a pgserver
PostgreSQL): each attack that the chain alone let through (a record's time or
event id changed, the newest records or all of them deleted) fails
verification once an anchor exists; an untampered log verifies. Anchors are
taken on demand (``anchor_now``, or the schedule triggered), never waited for.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from temporalio.client import Client, ScheduleIntervalSpec
from temporalio.testing import WorkflowEnvironment

from cli.audit import audit as audit_cli
from core.audit_anchors import anchor_now, ensure_anchor_schedule, read_anchors, schedule_id
from core.audit_chain import GENESIS, Anchor, ChainHead, record_hash
from core.audit_log import AuditLog
from core.audit_store import AuditStore, open_audit_log
from core.settings import Settings
from core.temporal import connect
from tests.conftest import Stack, free_port, make_settings
from tests.e2e_support import wait_until
from tests.pg import PgDatabase, pg_cluster, pg_db  # noqa: F401
from tests.test_audit_log_pg import T0, event
from worker import build_worker


@dataclass
class Anchored:
    """A worker on its own task queue writing its own audit log, and a way to edit that log behind its back."""

    settings: Settings
    client: Client
    log: AuditStore
    pg: PgDatabase | None

    @property
    def table(self) -> str:
        return "jit_audit" if self.pg else "audit"

    def tamper(self, statement: str, *params: object) -> None:
        """``statement`` with ``{table}`` and ``?`` placeholders, run as whoever can write the store."""
        statement = statement.format(table=self.table)
        if self.pg is not None:
            self.pg.execute(statement.replace("?", "%s"), params)
            return
        with sqlite3.connect(self.settings.audit_log_path) as db:
            db.execute(statement, params)

    async def anchor(self) -> list[Anchor]:
        """One anchor taken now, and every anchor once visibility lists it."""
        head = await anchor_now(self.client, self.settings)

        async def listed() -> list[Anchor] | None:
            anchors = await read_anchors(self.client, self.settings)
            return anchors if any(a.head == head for a in anchors) else None

        return await wait_until(listed, timeout=30, what="the anchor in visibility")

    def verify_cli(self, *args: str) -> tuple[int, str, str]:
        """``jit audit verify`` with the worker's settings in the environment."""
        env = {
            "JIT_DATA_DIR": str(self.settings.data_dir),
            "JIT_TEMPORAL_ADDRESS": self.settings.temporal_address,
            "JIT_TEMPORAL_NAMESPACE": self.settings.temporal_namespace,
            "JIT_TASK_QUEUE": self.settings.task_queue,
            "JIT_AUDIT_LOG_DSN": self.pg.dsn if self.pg else None,
        }
        result = CliRunner().invoke(audit_cli, ["verify", *args], env=env)
        return result.exit_code, result.stdout, result.stderr


@pytest.fixture(params=["sqlite", "postgres"])
async def anchored(
    request: pytest.FixtureRequest, dev_env: WorkflowEnvironment, tmp_path: Path
) -> AsyncIterator[Anchored]:
    pg = request.getfixturevalue("pg_db") if request.param == "postgres" else None
    settings = make_settings(dev_env.client, tmp_path / "data", audit_log_dsn=pg.dsn if pg else None)
    client = await connect(settings)
    log = open_audit_log(settings)
    with ThreadPoolExecutor(max_workers=4) as executor:
        async with build_worker(client, settings, executor):
            yield Anchored(settings, client, log, pg)


def five() -> list:
    return [event(f"req-{i}", 1, T0 + timedelta(minutes=i)) for i in range(5)]


async def test_an_untampered_log_verifies_against_its_anchors(anchored: Anchored) -> None:
    empty = await anchored.anchor()  # an anchor of the empty log holds for any log
    assert empty[0].head == ChainHead(n=0, event_id="", hash=GENESIS, count=0)
    anchored.log.append(five())
    anchors = await anchored.anchor()
    assert anchors[0].head.count == 5 and anchors[0].head.event_id == "req-4:1"
    assert anchored.log.check(anchors) == (5, None)
    # Records written after the newest anchor extend the chain: still ok.
    anchored.log.append([event("req-5", 1, T0), event("req-5", 2, T0)])
    assert anchored.log.check(anchors) == (7, None)
    code, out, err = await asyncio.to_thread(anchored.verify_cli)
    assert (code, out) == (0, "ok: 7 records\n"), err
    assert "checked against 2 anchor(s); the newest of " in err and "saw 5" in err


async def test_moving_a_records_time_fails_verification(anchored: Anchored) -> None:
    anchored.log.append(five())
    anchors = await anchored.anchor()
    # The attack: req-2 moved a day back drops out of an export of its hour...
    window = {"since": T0, "until": T0 + timedelta(hours=1)}
    assert "req-2" in {e.request_id for e in anchored.log.export(**window)}
    moved = T0 - timedelta(days=1)
    anchored.tamper(
        "UPDATE {table} SET at = ? WHERE event_id = ?", moved if anchored.pg else moved.isoformat(), "req-2:1"
    )
    assert "req-2" not in {e.request_id for e in anchored.log.export(**window)}
    # ...and verification now says so.
    checked, broken = anchored.log.check(anchors)
    assert broken is not None and (checked, broken.event_id) == (2, "req-2:1")
    assert broken.why == "content does not match its hash"


async def test_changing_a_records_event_id_fails_verification(anchored: Anchored) -> None:
    anchored.log.append(five())
    anchors = await anchored.anchor()
    anchored.tamper("UPDATE {table} SET event_id = ? WHERE event_id = ?", "req-9:1", "req-3:1")
    checked, broken = anchored.log.check(anchors)
    assert broken is not None and (checked, broken.event_id) == (3, "req-9:1")
    assert broken.why == "content does not match its hash"


async def test_deleting_the_newest_records_fails_verification(anchored: Anchored) -> None:
    anchored.log.append(five())
    anchors = await anchored.anchor()
    anchored.tamper("DELETE FROM {table} WHERE event_id IN (?, ?)", "req-3:1", "req-4:1")
    assert anchored.log.check() == (3, None)  # the chain alone cannot see it
    checked, broken = anchored.log.check(anchors)
    assert broken is not None and (checked, broken.n, broken.event_id) == (3, anchors[0].head.n, "req-4:1")
    assert broken.why.startswith("missing: the anchor of ")
    assert "which saw 5 records ending here, the log holds 3 records that chain" in broken.why
    code, out, err = await asyncio.to_thread(anchored.verify_cli)
    assert code == 1 and out == ""
    assert f"jit: broken at record {broken.n} (event req-4:1): missing: the anchor" in err
    # Without the anchors (as before them) it would pass: the flag says what it gives up.
    assert (await asyncio.to_thread(anchored.verify_cli, "--chain-only"))[:2] == (0, "ok: 3 records\n")


async def test_deleting_every_record_fails_verification(anchored: Anchored) -> None:
    anchored.log.append(five())
    anchors = await anchored.anchor()
    anchored.tamper("DELETE FROM {table}")
    assert anchored.log.check() == (0, None)
    checked, broken = anchored.log.check(anchors)
    assert broken is not None and (checked, broken.event_id) == (0, "req-4:1")
    assert "the log holds 0 records that chain" in broken.why


async def test_rewriting_the_whole_log_is_caught_by_an_earlier_anchor(anchored: Anchored) -> None:
    """Re-sealing every record from an edit on, then letting a new anchor record the forged head."""
    anchored.log.append(five())
    await anchored.anchor()
    anchored.tamper("DELETE FROM {table}")
    forged = five()
    forged[1] = forged[1].model_copy(update={"reason": "nothing to see"})
    anchored.log.append(forged)  # the writer's own code re-seals a consistent chain
    anchors = await anchored.anchor()
    assert anchors[0].head.count == 5  # the newest anchor saw the forged log...
    checked, broken = anchored.log.check(anchors)
    assert broken is not None  # ...the one before it did not
    assert "differs from the anchor" in broken.why or broken.why.startswith("missing:")


async def test_the_schedule_is_made_once_and_anchors_when_triggered(anchored: Anchored) -> None:
    anchored.log.append(five())
    await ensure_anchor_schedule(anchored.client, anchored.settings)
    await ensure_anchor_schedule(anchored.client, anchored.settings)  # a second worker starting: no error
    handle = anchored.client.get_schedule_handle(schedule_id(anchored.settings))
    try:
        spec = (await handle.describe()).schedule.spec
        assert spec.intervals == [ScheduleIntervalSpec(every=timedelta(minutes=5))]
        moved = anchored.settings.model_copy(update={"audit_anchor_interval_s": 60.0})
        await ensure_anchor_schedule(anchored.client, moved)
        assert (await handle.describe()).schedule.spec.intervals == [ScheduleIntervalSpec(every=timedelta(minutes=1))]
        await handle.trigger()

        async def anchored_five() -> bool:
            anchors = await read_anchors(anchored.client, anchored.settings)
            return any(a.head.count == 5 and a.workflow_id.startswith(schedule_id(anchored.settings)) for a in anchors)

        await wait_until(anchored_five, timeout=30, what="an anchor of 5 records started by the schedule")
    finally:
        await handle.delete()


def legacy_log(path: Path) -> AuditLog:
    """A log as jit wrote it before hash versions: no ``v`` column, hash of (previous hash, body) only."""
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE audit (n INTEGER PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, at TEXT NOT NULL,"
            " body TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL)"
        )
        prev = GENESIS
        for e in five()[:3]:
            body = e.model_dump_json()
            digest = record_hash(prev, body)
            db.execute(
                "INSERT INTO audit (event_id, at, body, prev_hash, hash) VALUES (?, ?, ?, ?, ?)",
                (e.event_id, e.at.isoformat(), body, prev, digest),
            )
            prev = digest
    return AuditLog(path)  # opening it to write adds the column: old records are v1


def test_an_old_log_keeps_verifying_and_its_times_are_held_to_their_bodies(tmp_path: Path) -> None:
    log = legacy_log(tmp_path / "audit.sqlite3")
    assert log.check() == (3, None)
    log.append(five()[3:])
    assert [r.version for r in log.records()] == [1, 1, 1, 2, 2]
    assert log.check() == (5, None)
    with sqlite3.connect(log.path) as db:
        db.execute("UPDATE audit SET at = ? WHERE n = 2", ((T0 - timedelta(days=1)).isoformat(),))
    checked, broken = log.check()
    assert broken is not None and (checked, broken.n, broken.why) == (1, 2, "stored time differs from its content")


def test_a_record_cannot_be_downgraded_to_the_old_hash(tmp_path: Path) -> None:
    log = legacy_log(tmp_path / "audit.sqlite3")
    log.append(five()[3:])
    last = list(log.records())[-1]
    with sqlite3.connect(log.path) as db:  # re-sealed as v1: a valid v1 hash, but after a v2 record
        db.execute("UPDATE audit SET v = 1, hash = ? WHERE n = ?", (record_hash(last.prev_hash, last.body), last.n))
    checked, broken = log.check()
    assert broken is not None and (checked, broken.n) == (4, 5)
    assert broken.why == "hash version 1 after version 2: downgraded"


def test_verify_refuses_without_temporal_and_names_the_way_out(tmp_path: Path) -> None:
    AuditLog(tmp_path / "audit.sqlite3").append(five())
    env = {"JIT_DATA_DIR": str(tmp_path), "JIT_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}", "JIT_AUDIT_LOG_DSN": None}
    result = CliRunner().invoke(audit_cli, ["verify"], env=env)
    assert result.exit_code == 1, result.output
    assert "cannot read the audit anchors from Temporal at 127.0.0.1:" in result.stderr
    assert "--chain-only checks the chain alone, which cannot see records cut off at the end" in result.stderr
    assert CliRunner().invoke(audit_cli, ["verify", "--chain-only"], env=env).stdout == "ok: 5 records\n"


async def test_the_api_verifies_the_log_against_its_anchors(stack: Stack) -> None:
    auditor = stack.auth("erin", "auditors")
    log = open_audit_log(stack.settings)
    log.append(five())
    head = await anchor_now(stack.client, stack.settings)

    async def verified() -> dict | None:
        response = await stack.http.get("/v1/audit/verify", headers=auditor)
        assert response.status_code == 200, response.text
        body = response.json()
        return body if body["anchors"] == 1 else None

    body = await wait_until(verified, timeout=30, what="the anchor in the API's verification")
    assert (body["ok"], body["records"], body["broken"]) == (True, 5, None)
    assert body["newest_anchor"]["head"] == head.model_dump()

    with sqlite3.connect(stack.settings.audit_log_path) as db:
        db.execute("DELETE FROM audit WHERE n = (SELECT max(n) FROM audit)")
    body = (await stack.http.get("/v1/audit/verify", headers=auditor)).json()
    assert (body["ok"], body["records"]) == (False, 4)
    assert body["broken"]["event_id"] == "req-4:1" and body["broken"]["why"].startswith("missing: the anchor")

    refused = await stack.http.get("/v1/audit/verify", headers=stack.auth("mallory", "engineers"))
    assert refused.status_code == 403, refused.text
