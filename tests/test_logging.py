"""Logs: one JSON object a line, the fields an operator filters on, and never a secret.

A whole lifecycle on a PostgreSQL resource goes through the API with the API's
and the worker's logs captured as ``JIT_LOG_FORMAT=json`` writes them: filed,
approved, credentials fetched (an access token and a database password),
introspected, extended, revoked, plus a call with a bogus bearer token. Every
line must parse, and no identity token, access token, password, admin DSN or
key file may appear in any of them.
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from psycopg.conninfo import conninfo_to_dict
from temporalio.testing import WorkflowEnvironment

from core.logging import JsonFormatter, TextFormatter, log_context
from tests.conftest import Stack, make_settings
from tests.e2e_support import postgres_resource, provisioner_admin, running_stack, write_catalog
from tests.pg import PgDatabase, pg_cluster, pg_db  # noqa: F401

RESOURCE = "postgres:logs/public.orders"
DSN_ENV = "JIT_LOG_TEST_ORDERS_DSN"
JWT = re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]+")


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Everything logged in this process (API, worker, activities) as JSON lines, at INFO."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@pytest.fixture
def admin_dsn(pg_db: PgDatabase) -> Iterator[str]:  # noqa: F811
    pg_db.execute("CREATE TABLE orders (id int PRIMARY KEY, total int); INSERT INTO orders VALUES (1, 100)")
    with provisioner_admin(pg_db, ["public.orders"]) as dsn:
        yield dsn


@pytest.fixture
async def pg_stack(
    dev_env: WorkflowEnvironment,
    pg_db: PgDatabase,  # noqa: F811
    admin_dsn: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Stack]:
    monkeypatch.setenv(DSN_ENV, admin_dsn)
    catalog = write_catalog(
        tmp_path / "catalog.yaml", postgres_resource(RESOURCE, pg_db, dsn_env=DSN_ENV, tables=["public.orders"])
    )
    settings = make_settings(dev_env.client, tmp_path / "data", catalog_path=catalog)
    async with running_stack(settings) as stack:
        yield stack


def key_material(data_dir: Path) -> list[str]:
    """Long enough pieces of every key file the stack wrote (signing, dev identity, codec, password keys)."""
    pieces = []
    for path in sorted(
        p for p in data_dir.rglob("*") if p.is_file() and not p.name.endswith(("sqlite3", "-wal", "-shm"))
    ):
        text = path.read_bytes().decode("utf-8", "replace")
        pieces += [line.strip() for line in text.splitlines() if len(line.strip()) >= 16 and "-----" not in line]
    return pieces


async def test_lifecycle_logs_are_json_and_hold_no_secret(
    pg_stack: Stack,
    pg_db: PgDatabase,  # noqa: F811
    admin_dsn: str,
    captured: io.StringIO,
) -> None:
    stack = pg_stack
    alice_token, bob_token = stack.token("alice", "engineers"), stack.token("bob", "db-owners")
    server_token = stack.token("orders-db", "resource-servers")
    alice, bob = {"Authorization": f"Bearer {alice_token}"}, {"Authorization": f"Bearer {bob_token}"}

    created = await stack.http.post(
        "/v1/requests",
        json={"resource": RESOURCE, "action": "read", "duration": "15m", "reason": "INC-5: logs"},
        headers=alice,
    )
    assert created.status_code == 201, created.text
    request_id = created.json()["id"]
    pg_db.request_ids.append(request_id)
    approved = await stack.http.post(f"/v1/requests/{request_id}/approve", json={"comment": "ok"}, headers=bob)
    assert approved.json()["status"] == "active", approved.text
    creds = (await stack.http.get(f"/v1/requests/{request_id}/credentials", headers=alice)).json()
    access_token, password = creds["access_token"], creds["database"]["password"]
    introspected = await stack.http.post(
        "/v1/introspect", data={"token": access_token}, headers={"Authorization": f"Bearer {server_token}"}
    )
    assert introspected.json()["active"] is True
    extended = await stack.http.post(
        f"/v1/requests/{request_id}/extend", json={"duration": "5m", "reason": "more"}, headers=alice
    )
    assert extended.status_code == 200, extended.text
    bogus = "not-a-jwt-but-a-secret-4f1d9c"
    refused = await stack.http.get(f"/v1/requests/{request_id}", headers={"Authorization": f"Bearer {bogus}"})
    assert refused.status_code == 401
    revoked = await stack.http.post(f"/v1/requests/{request_id}/revoke", json={"reason": "done"}, headers=alice)
    assert revoked.json()["status"] == "revoked", revoked.text

    text = captured.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]  # every line is one JSON object
    assert lines
    for line in lines:
        assert {"time", "level", "logger", "message"} <= line.keys(), line

    secrets = {
        "alice's identity token": alice_token,
        "bob's identity token": bob_token,
        "the resource server's identity token": server_token,
        "the access token": access_token,
        "the database password": password,
        "the bogus bearer token": bogus,
        "the admin DSN's password": str(conninfo_to_dict(admin_dsn)["password"]),
    }
    secrets |= {f"key file line {i}": piece for i, piece in enumerate(key_material(stack.settings.data_dir))}
    leaked = [name for name, secret in secrets.items() if secret in text]
    assert not leaked, leaked
    assert not JWT.search(text)

    # The access log: route templates, the caller, the request, status and duration.
    access = [line for line in lines if line["logger"] == "jit.api.access"]
    approve = next(line for line in access if line["route"] == "/v1/requests/{request_id}/approve")
    assert (approve["actor"], approve["request_id"], approve["status"]) == ("bob", request_id, 200)
    assert approve["workflow_id"] == f"access-request-{request_id}"
    assert approve["method"] == "POST" and approve["duration_ms"] >= 0
    assert any(line["route"] == "/v1/requests" and line.get("actor") == "alice" for line in access)
    assert any(line["status"] == 401 and "actor" not in line for line in access)
    # The worker's activities: tied to the workflow and the request.
    issued = next(line for line in lines if line["message"].startswith("grant issued"))
    assert (issued["workflow_id"], issued["request_id"]) == (f"access-request-{request_id}", request_id)


def _record(message: str, **extra: Any) -> logging.LogRecord:
    record = logging.LogRecord("jit.test", logging.INFO, __file__, 1, message, None, None)
    record.__dict__.update(extra)
    return record


def test_formatters_redact_secret_fields_and_jwts() -> None:
    token = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"
    record = _record(f"got {token}", password="hunter2", dsn="postgresql://a:b@h/db", request_id="r1", count=3)
    with log_context(actor="alice"):
        line = json.loads(JsonFormatter().format(record))
        text = TextFormatter().format(_record(f"got {token}", request_id="r1"))
    assert line["message"] == "got [jwt redacted]"
    assert (line["password"], line["dsn"], line["count"]) == ("[redacted]", "[redacted]", 3)
    assert (line["actor"], line["request_id"], line["workflow_id"]) == ("alice", "r1", "access-request-r1")
    assert token not in text and "hunter2" not in text
    assert text.endswith("request_id=r1 actor=alice")
