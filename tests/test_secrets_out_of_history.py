"""No secret ever reaches Temporal's database or the logs; everything else there is ciphertext.

A whole lifecycle (request, approve, credentials, a database login,
introspection, extend, revoke) runs through the API and a worker process
against a dev server this test starts on its own SQLite file. Then the bytes
of that file (and its WAL), every value stored in it, the worker's output and
every log record of this process are searched for each secret in each of the
encodings it might take. The request's reason is searched for too: it is in
the history (the auditor's decoded view shows it), but only encrypted.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import shutil
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf import json_format
from psycopg.conninfo import conninfo_to_dict
from temporalio.api.common.v1 import Payload
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from core.codec import ENCODING, EncryptionCodec, parse_codec_keys
from core.models import Status
from core.settings import Settings
from core.temporal import DATA_CONVERTER, SEARCH_ATTRIBUTES, connect, workflow_id
from tests.conftest import BIN, Stack, free_port, make_settings
from tests.e2e_support import WorkerProcess, login, postgres_resource, provisioner_admin, write_catalog
from tests.pg import PgDatabase, pg_cluster, pg_db  # noqa: F401
from workflows.access_request import AccessRequestWorkflow

RESOURCE = "postgres:vault/public.orders"
DSN_ENV = "JIT_SECRETS_TEST_DSN"


def variants(raw: bytes) -> list[bytes]:
    """The encodings a key might leak in: raw, hex, base64 (both alphabets, padded or not)."""
    b64 = base64.b64encode(raw)
    url = base64.urlsafe_b64encode(raw)
    return [raw, raw.hex().encode(), b64, b64.rstrip(b"="), url, url.rstrip(b"=")]


def payloads_in(value: object) -> list[Payload]:
    """Every Payload inside a proto message (history events nest them in many places), but
    search attributes: the server indexes those, so they are plain by design (and hold no secret)."""
    found: list[Payload] = []
    if isinstance(value, Payload):
        return [value]
    if hasattr(value, "ListFields"):
        for field, child in value.ListFields():  # type: ignore[union-attr]
            if field.name == "search_attributes" or isinstance(child, str | bytes | int | float | bool):
                continue
            if hasattr(child, "ListFields"):
                found += payloads_in(child)
            elif hasattr(child, "values") and hasattr(child, "keys"):  # map fields
                for item in child.values():
                    found += payloads_in(item)
            else:  # repeated fields
                for item in child:
                    found += payloads_in(item)
    return found


def core_marker_details(marker: object) -> list[Payload]:
    """The plain payloads the SDK core writes on its own markers."""
    name = getattr(marker, "marker_name", "")
    details = getattr(marker, "details", {})
    if name == "core_patch":
        return [p for v in details.values() for p in v.payloads]
    if name == "core_local_activity" and "data" in details:
        return list(details["data"].payloads)
    return []


def stored_values(db_file: Path, into: Path) -> bytes:
    """Every text and blob value of every table, each whole (a raw file may split a long value
    over overflow pages). Read from a copy, so the WAL is folded in and the original untouched."""
    into.mkdir()
    for f in db_file.parent.glob(db_file.name + "*"):
        shutil.copy(f, into / f.name)
    values: list[bytes] = []
    with sqlite3.connect(into / db_file.name) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for row in db.execute(f'SELECT * FROM "{table}"'):
                for value in row:
                    if isinstance(value, bytes):
                        values.append(value)
                    elif isinstance(value, str):
                        values.append(value.encode())
    return b"\n".join(values)


@dataclass
class OwnServer:
    env: WorkflowEnvironment
    db_file: Path
    stopped: bool = False

    async def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            await self.env.shutdown()


@pytest.fixture
async def own_server(tmp_path: Path) -> AsyncIterator[OwnServer]:
    """A dev server on a database file, WAL on, as ``make run`` starts it."""
    db_file = tmp_path / "temporal" / "temporal.sqlite"
    db_file.parent.mkdir()
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(BIN / "temporal"),
        dev_server_database_filename=str(db_file),
        dev_server_extra_args=["--sqlite-pragma", "journal_mode=wal"],
        search_attributes=SEARCH_ATTRIBUTES,
        data_converter=DATA_CONVERTER,  # no codec: this client sees what is stored
        dev_server_log_level="error",
    )
    server = OwnServer(env, db_file)
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def admin_dsn(pg_db: PgDatabase) -> Iterator[str]:  # noqa: F811
    pg_db.execute("CREATE TABLE orders (id int, total int); INSERT INTO orders VALUES (1, 100)")
    with provisioner_admin(pg_db, ["public.orders"]) as dsn:
        yield dsn


async def serve_logged_api(settings: Settings) -> tuple[uvicorn.Server, asyncio.Task[None], str]:
    """Like conftest.serve_api, but uvicorn's own loggers (access log included) reach caplog."""
    port = free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_config=None, log_level="debug", access_log=True
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    return server, task, f"http://127.0.0.1:{port}"


async def test_no_secret_in_history_or_logs(
    own_server: OwnServer,
    pg_db: PgDatabase,  # noqa: F811
    tmp_path: Path,
    admin_dsn: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    env, db_file = own_server.env, own_server.db_file
    admin_password = conninfo_to_dict(admin_dsn)["password"]

    signing_key = Ed25519PrivateKey.generate()
    signing_pem = signing_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    codec_raw = os.urandom(32)
    codec_keys = f"e2e-k1:{base64.urlsafe_b64encode(codec_raw).decode()}"
    password_secret = f"pg-hmac-{uuid.uuid4().hex}"
    reason = f"INC-{uuid.uuid4().hex[:8]}: refund stuck for jane.doe@example.com"
    revoke_reason = f"done with {uuid.uuid4().hex[:8]}"

    catalog = write_catalog(
        tmp_path / "catalog.yaml", postgres_resource(RESOURCE, pg_db, dsn_env=DSN_ENV, tables=["public.orders"])
    )
    settings = make_settings(
        env.client,
        tmp_path / "data",
        catalog_path=catalog,
        signing_key_pem=signing_pem.decode(),
        codec_keys=codec_keys,
        pg_password_secret=password_secret,
    )
    # Every process gets the same environment, as in production.
    worker = WorkerProcess(
        settings,
        tmp_path / "worker.log",
        {
            DSN_ENV: admin_dsn,
            "JIT_CODEC_KEYS": codec_keys,
            "JIT_PG_PASSWORD_SECRET": password_secret,
            "JIT_SIGNING_KEY_PEM": signing_pem.decode(),
        },
    )
    await worker.start()
    server, task, base_url = await serve_logged_api(settings)
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
            stack = Stack(settings, await connect(settings), http, base_url)
            alice, bob = stack.auth("alice", "engineers"), stack.auth("bob", "db-owners")
            created = await http.post(
                "/v1/requests",
                json={"resource": RESOURCE, "action": "read", "duration": "15m", "reason": reason, "ticket": "INC-9"},
                headers=alice,
            )
            assert created.status_code == 201, created.text
            request_id = created.json()["id"]
            pg_db.request_ids.append(request_id)
            approved = await http.post(f"/v1/requests/{request_id}/approve", json={"comment": "ok"}, headers=bob)
            assert approved.json()["status"] == "active", approved.text

            creds = (await http.get(f"/v1/requests/{request_id}/credentials", headers=alice)).json()
            access_token, database = creds["access_token"], creds["database"]
            with login(database) as conn:
                assert conn.execute("SELECT total FROM orders").fetchall() == [(100,)]
            introspected = await http.post(
                "/v1/introspect", data={"token": access_token}, headers=stack.auth("orders-db", "resource-servers")
            )
            assert introspected.json()["active"] is True
            extended = await http.post(
                f"/v1/requests/{request_id}/extend", json={"duration": "5m", "reason": "more"}, headers=alice
            )
            assert extended.status_code == 200, extended.text
            revoked = await http.post(
                f"/v1/requests/{request_id}/revoke", json={"reason": revoke_reason}, headers=alice
            )
            assert revoked.json()["status"] == "revoked", revoked.text
            assert revoked.json()["revocation_verified_at"] is not None
            identity_tokens = [alice["Authorization"].split()[1], bob["Authorization"].split()[1]]
    finally:
        server.should_exit = True
        await task
        await worker.stop()

    # What an auditor sees: the history decrypts, and the reason is in it.
    history = await env.client.get_workflow_handle(workflow_id(request_id)).fetch_history()
    encrypted = [p for event in history.events for p in payloads_in(event) if p.metadata.get("encoding") == ENCODING]
    assert len(encrypted) >= 10  # input, update arguments and results, activity inputs and results
    # Every payload is encrypted, but what the SDK core writes past the codec: its patch
    # markers (a patch id) and, on a local activity's marker, the bookkeeping beside the
    # result (activity type, attempt, times); the result itself is encrypted.
    stored_plain = [p for event in history.events for p in payloads_in(event) if p.metadata.get("encoding") != ENCODING]
    core_bookkeeping = [
        p for event in history.events for p in core_marker_details(event.marker_recorded_event_attributes)
    ]
    stored_plain = [p for p in stored_plain if p not in core_bookkeeping]
    assert stored_plain == [], "a payload in history is not encrypted"
    decoded = await EncryptionCodec(parse_codec_keys(codec_keys)).decode(encrypted)
    decoded_text = b"\n".join(p.data for p in decoded)
    assert reason.encode() in decoded_text and revoke_reason.encode() in decoded_text
    final = await stack.client.get_workflow_handle_for(AccessRequestWorkflow.run, workflow_id(request_id)).result()
    assert final.status is Status.REVOKED and final.reason == reason

    # The files as they are while the server runs (WAL not yet checkpointed), then once it has stopped.
    raw = b"".join(f.read_bytes() for f in sorted(db_file.parent.glob(db_file.name + "*")))
    assert db_file.with_name(db_file.name + "-wal").exists()
    await own_server.stop()
    raw += b"".join(f.read_bytes() for f in sorted(db_file.parent.glob(db_file.name + "*")))
    values = stored_values(db_file, tmp_path / "db-copy")
    logs = worker.log() + caplog.text.encode() + b"\n".join(r.getMessage().encode() for r in caplog.records)

    # The search is meaningful: history is in this file, its ciphertext as sent.
    assert workflow_id(request_id).encode() in values
    assert ENCODING in raw and b"e2e-k1" in raw
    assert any(p.data in values for p in encrypted)
    # The worker's and the API's (uvicorn's access log) output were captured.
    assert b"provisioned" in logs and b'"POST /v1/requests HTTP/1.1" 201' in logs

    raw_signing = signing_key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    pem_body = b"".join(line for line in signing_pem.splitlines() if not line.startswith(b"-----"))
    secrets = {
        "access token": [access_token.encode(), access_token.rsplit(".", 1)[1].encode()],
        "database password": [database["password"].encode()],
        "signing key PEM": [signing_pem, pem_body],
        "signing key bytes": variants(raw_signing),
        "codec key": [codec_keys.encode(), *variants(codec_raw)],
        "password HMAC secret": [password_secret.encode()],
        "admin DSN password": [admin_password.encode()],
        "identity token": [t.encode() for t in identity_tokens],
    }
    for name, forms in secrets.items():
        for form in forms:
            assert form not in raw, f"{name} in the Temporal database file"
            assert form not in values, f"{name} in a value stored by Temporal"
            assert form not in logs, f"{name} in the logs"
    for text in (reason, revoke_reason, "jane.doe@example.com"):
        assert text.encode() not in raw and text.encode() not in values, f"{text!r} stored in plaintext"
    # And what the UI would show without the codec: JSON of the ciphertext, never the reason.
    assert reason not in json_format.MessageToJson(history.events[0])
