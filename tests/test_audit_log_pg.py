"""The audit log on PostgreSQL (core/audit_log_pg.py): idempotent appends, the chain, export as SQLite does."""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.audit import audit as audit_cli
from core.audit import AuditEvent, AuditEventType
from core.audit_chain import record_hash_v2
from core.audit_log import AuditLog
from core.audit_log_pg import PostgresAuditLog
from core.audit_store import AuditStore, open_audit_log
from core.settings import Settings
from tests.pg import PgDatabase, pg_cluster, pg_db  # noqa: F401

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
PLUS2 = timezone(timedelta(hours=2))


def event(
    request_id: str, seq: int, at: datetime, *, requester: str = "alice", resource: str = "k8s:prod/logs"
) -> AuditEvent:
    return AuditEvent(
        event_id=f"{request_id}:{seq}",
        request_id=request_id,
        seq=seq,
        type=AuditEventType.REQUESTED if seq == 1 else AuditEventType.APPROVED,
        at=at,
        actor=requester,
        reason="INC-1",
        requester=requester,
        resource=resource,
        action="read",
    )


def sample() -> list[AuditEvent]:
    """Times in several forms and zones, ties broken by request id (bytewise) then seq (as a number)."""
    return [
        event("b-req", 1, T0),
        event("a-req", 10, T0 + timedelta(minutes=1)),
        event("a-req", 2, T0 + timedelta(minutes=1)),
        event("B-req", 1, T0 + timedelta(minutes=1), requester="bob"),
        event("c-req", 1, (T0 + timedelta(minutes=2)).astimezone(PLUS2), resource="postgres:orders/public.orders"),
        event("d-req", 1, (T0 + timedelta(minutes=3)).replace(tzinfo=None)),  # naive: UTC, as SQLite reads it
        event("e-req", 1, T0 + timedelta(minutes=4, microseconds=1)),
        event("f-req", 1, T0 - timedelta(microseconds=1)),
    ]


@pytest.fixture
def pg_log(pg_db: PgDatabase) -> PostgresAuditLog:  # noqa: F811
    return PostgresAuditLog(pg_db.dsn)


@pytest.fixture(params=["sqlite", "postgres"])
def any_log(request: pytest.FixtureRequest, tmp_path: Path) -> AuditStore:
    if request.param == "sqlite":
        return AuditLog(tmp_path / "audit.sqlite3")
    return PostgresAuditLog(request.getfixturevalue("pg_db").dsn)


def test_appending_the_same_events_twice_stores_them_once(pg_log: PostgresAuditLog, pg_db: PgDatabase) -> None:  # noqa: F811
    events = sample()
    assert pg_log.append(events[:3]) == 3
    assert pg_log.append(events) == len(events) - 3  # a retried batch: only the new ones
    assert pg_log.append(events) == 0
    assert [e.event_id for e in pg_log.events()] == [e.event_id for e in events]
    assert pg_db.execute("SELECT count(*), count(DISTINCT event_id) FROM jit_audit") == [(len(events), len(events))]
    assert pg_log.check() == (len(events), None)
    assert pg_log.verify() is None


def test_the_chain_is_the_sqlite_logs_chain(pg_log: PostgresAuditLog, pg_db: PgDatabase, tmp_path: Path) -> None:  # noqa: F811
    sqlite_log = AuditLog(tmp_path / "audit.sqlite3")
    for log in (pg_log, sqlite_log):
        log.append(sample()[:4])
        log.append(sample()[4:])
    rows = pg_db.execute("SELECT n, event_id, at, body, prev_hash, hash, v FROM jit_audit ORDER BY n")
    assert rows[0][4] == "0" * 64
    # Every stored column is sealed (hash version 2).
    for (n, event_id, at, body, prev, digest, v), next_row in zip(rows, [*rows[1:], None], strict=True):
        assert v == 2
        assert digest == record_hash_v2(n, event_id, at, body, prev)
        assert next_row is None or next_row[4] == digest
    with sqlite3.connect(sqlite_log.path) as db:
        assert [r[0] for r in db.execute("SELECT hash FROM audit ORDER BY n")] == [r[5] for r in rows]


def test_verify_names_the_record_whose_body_was_edited(pg_log: PostgresAuditLog, pg_db: PgDatabase) -> None:  # noqa: F811
    pg_log.append(sample())
    (n, event_id), *_ = pg_db.execute("SELECT n, event_id FROM jit_audit ORDER BY n OFFSET 3 LIMIT 1")
    pg_db.execute("UPDATE jit_audit SET body = replace(body, 'INC-1', 'INC-2') WHERE n = %s", (n,))  # one byte
    checked, broken = pg_log.check()
    assert checked == 3
    assert broken is not None
    assert (broken.n, broken.event_id, broken.why) == (n, event_id, "content does not match its hash")
    assert pg_log.verify() == broken


def test_verify_names_a_removed_record(pg_log: PostgresAuditLog, pg_db: PgDatabase) -> None:  # noqa: F811
    pg_log.append(sample())
    rows = pg_db.execute("SELECT n, event_id FROM jit_audit ORDER BY n")
    pg_db.execute("DELETE FROM jit_audit WHERE n = %s", (rows[2][0],))
    broken = pg_log.verify()
    assert broken is not None
    assert (broken.n, broken.event_id, broken.why) == (*rows[3], "does not follow the record before it")


WINDOWS = [
    {},
    {"since": T0},
    {"until": T0 + timedelta(minutes=1)},
    {"since": T0 + timedelta(minutes=1), "until": T0 + timedelta(minutes=3)},
    {"since": (T0 + timedelta(minutes=2)).astimezone(PLUS2)},  # a zone other than the stored ones
    {"since": (T0 + timedelta(minutes=3)).replace(tzinfo=None), "until": T0 + timedelta(minutes=4, microseconds=1)},
    {"requester": "bob"},
    {"resource": "postgres:orders/public.orders", "since": T0},
    {"requester": "alice", "since": T0, "until": T0 + timedelta(minutes=2)},
]


def expected(events: list[AuditEvent], window: dict) -> list[str]:
    def utc(moment: datetime) -> datetime:
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment

    since, until = window.get("since"), window.get("until")
    kept = [
        e
        for e in events
        if (since is None or utc(e.at) >= utc(since))
        and (until is None or utc(e.at) < utc(until))
        and window.get("requester", e.requester) == e.requester
        and window.get("resource", e.resource) == e.resource
    ]
    kept.sort(key=lambda e: (utc(e.at), e.request_id.encode(), e.seq))
    return [e.event_id for e in kept]


@pytest.mark.parametrize("window", WINDOWS, ids=[",".join(w) or "all" for w in WINDOWS])
def test_export_filters_and_orders_alike_on_both_backends(any_log: AuditStore, window: dict) -> None:
    events = sample()
    any_log.append(events)
    exported = list(any_log.export(**window))
    assert [e.event_id for e in exported] == expected(events, window)
    by_id = {e.event_id: e for e in events}
    assert all(e == by_id[e.event_id] for e in exported)  # the body as appended, naive times included


def test_the_dsn_picks_postgres_and_jit_audit_verify_reads_it(
    pg_db: PgDatabase,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert isinstance(open_audit_log(Settings(data_dir=tmp_path), create=False), AuditLog)
    settings = Settings(data_dir=tmp_path, audit_log_dsn=pg_db.dsn)
    assert pg_db.dsn not in repr(settings)
    log = open_audit_log(settings)
    assert isinstance(log, PostgresAuditLog)
    assert pg_db.dsn not in repr(log)
    log.append(sample())

    monkeypatch.setenv("JIT_AUDIT_LOG_DSN", pg_db.dsn)
    # No Temporal here: the chain alone (tests/test_audit_anchor.py checks the anchors).
    result = CliRunner().invoke(audit_cli, ["verify", "--data-dir", str(tmp_path), "--chain-only"])
    assert (result.exit_code, result.output) == (0, f"ok: {len(sample())} records\n")
    assert not (tmp_path / "audit.sqlite3").exists()

    pg_db.execute("UPDATE jit_audit SET body = body || ' ' WHERE n = (SELECT max(n) FROM jit_audit)")
    result = CliRunner().invoke(audit_cli, ["verify", "--data-dir", str(tmp_path), "--chain-only"])
    assert result.exit_code == 1
    assert result.stderr.startswith("jit: broken at record ")
    assert "content does not match its hash" in result.stderr
    assert pg_db.dsn not in result.output

    monkeypatch.setenv("JIT_AUDIT_LOG_DSN", pg_db.dsn.replace(pg_db.name, "jit_no_such_db"))
    result = CliRunner().invoke(audit_cli, ["verify", "--chain-only"])
    assert result.exit_code == 1
    assert result.stderr.startswith("jit: cannot read the PostgreSQL audit log (JIT_AUDIT_LOG_DSN): ")


def test_concurrent_writers_keep_one_chain(pg_log: PostgresAuditLog, pg_db: PgDatabase) -> None:  # noqa: F811
    def write(worker: int) -> None:
        log = PostgresAuditLog(pg_db.dsn)  # each worker its own log, as separate processes would
        for seq in range(1, 11):
            log.append([event(f"w{worker}", seq, T0 + timedelta(seconds=seq))])

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, range(8)))
    assert pg_log.check() == (80, None)
