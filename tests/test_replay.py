"""Histories replay with the current workflow code: no non-determinism slipped in.

Two sources: histories recorded from earlier code and committed under
``tests/histories/`` (re-record with ``python -m tests.scenarios tests/histories``
only when a change is made safe by ``workflow.patched``), and fresh histories
of every lifecycle branch run now.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from core.temporal import DATA_CONVERTER
from tests.scenarios import run_scenarios
from workflows.access_request import AccessRequestWorkflow

COMMITTED = sorted((Path(__file__).parent / "histories").glob("*.json"))


def replayer() -> Replayer:
    return Replayer(workflows=[AccessRequestWorkflow], data_converter=DATA_CONVERTER)


def test_committed_histories_exist() -> None:
    assert {p.stem for p in COMMITTED} >= {"approved_extended_expired", "denied", "cancelled", "timed_out"}


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.stem)
async def test_committed_history_replays(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    await replayer().replay_workflow(history)


async def test_fresh_histories_replay(dev_env: WorkflowEnvironment, tmp_path: Path) -> None:
    handles = await run_scenarios(dev_env.client, tmp_path)
    assert len(handles) == 9
    for handle in handles.values():
        await replayer().replay_workflow(await handle.fetch_history())
