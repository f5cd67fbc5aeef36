"""The README's walk-through runs as written: every ``$`` line of its walk-through blocks, in order,
in one shell, outside the repository, with its output compared (tests/walkthrough.py says how).

Against the stack ``make run`` starts, on the example catalog and policies, on a Temporal server
of its own (its policies' clock on a Wednesday noon, as ``example_stack``'s, so the business-hours
rule never depends on when the test runs). ``jit`` finds the server through ``JIT_SERVER``, as the README tells a
reader to set it; the shell starts in an empty directory with its own HOME.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import (
    EXAMPLE_CATALOG,
    EXAMPLE_NOTIFICATIONS,
    EXAMPLE_POLICIES,
    ROOT,
    Stack,
    dev_server,
    running_stack,
)
from tests.walkthrough import Shell, Walkthrough, parse

README = ROOT / "README.md"
MAKE_RUN_API = "http://127.0.0.1:8000"
LIST_WAIT_S = 10.0


def test_the_walkthrough_blocks_parse() -> None:
    walk = parse(README)
    assert len(walk.steps) >= 10
    assert any(s.command.startswith("jit request") for s in walk.steps)


def test_a_wrong_output_is_caught() -> None:
    walk = Walkthrough([])
    step = parse_one("$ jit request x\n<id>  pending  (needs 1 approval from db-owners)")
    walk.check(step, ["3f0c9a1e-0000-4000-8000-000000000001  pending  (needs 1 approval from db-owners)"])
    assert walk.captured["id"] == "3f0c9a1e-0000-4000-8000-000000000001"
    try:
        walk.check(step, ["3f0c9a1e-0000-4000-8000-000000000001  active"])
    except AssertionError:
        pass
    else:
        raise AssertionError("a different output passed")


def test_a_missing_printed_block_is_caught() -> None:
    walk = Walkthrough([])
    out = "── notification to db-owners (filed) ──\n  alice asks for read on x for 15m\n\n  Request: 3f0c9a1e-0000-4000-8000-000000000001\n"
    assert walk.printed_in(["── notification to db-owners (filed) ──", "  Request: <id>"], out) is False  # not together
    assert walk.printed_in(["  alice asks for read on x for 15m", "  Request: <id>"], out) is True
    assert walk.printed_in(["  bob asks for read on x for 15m"], out) is False


def parse_one(text: str):  # type: ignore[no-untyped-def]
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"walk-{os.getpid()}.md"
    path.write_text(f"<!-- walkthrough -->\n```console\n{text}\n```\n")
    try:
        return parse(path).steps[0]
    finally:
        path.unlink()


@pytest.fixture
async def own_example_stack(tmp_path: Path) -> AsyncIterator[Stack]:
    """A Temporal server of its own: `jit ls --mine` must show alice's requests of this walk-through
    only, and other tests on the shared server are alice too."""
    async with (
        dev_server() as env,
        running_stack(
            env,
            tmp_path / "data",
            catalog_path=EXAMPLE_CATALOG,
            policies_dir=EXAMPLE_POLICIES,
            notifications_path=EXAMPLE_NOTIFICATIONS,  # as make run: every notification on the console
        ) as stack,
    ):
        yield stack


async def test_the_readme_walkthrough_runs_as_written(
    own_example_stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    example_stack = own_example_stack
    walk = parse(README)
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "HOME": str(home),
        "JIT_SERVER": example_stack.base_url,
        "LANG": "C.UTF-8",
        "TZ": "UTC",
    }
    shell = await Shell.start(tmp_path, env)
    try:
        for step in walk.steps:
            # The walk-through's URLs are those of `make run`; this stack listens elsewhere.
            command = walk.command(step).replace(MAKE_RUN_API, example_stack.base_url)
            deadline = time.monotonic() + LIST_WAIT_S
            while True:
                _, output = await shell.run(command)
                try:
                    walk.check(step, output)
                    break
                except AssertionError:
                    # A list is read from Temporal's visibility store, which trails by moments.
                    if " ls" not in command or time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.2)
    finally:
        await shell.close()
    # What make run's terminal printed meanwhile: the console notifications (sent without
    # waiting, so the last may still be on its way).
    assert walk.printed, "the walk-through shows no make-run output"
    printed = ""
    for block in walk.printed:
        deadline = time.monotonic() + LIST_WAIT_S
        while not walk.printed_in(block, printed := printed + capsys.readouterr().out):
            assert time.monotonic() < deadline, "make run never printed:\n" + "\n".join(block)
            await asyncio.sleep(0.1)
