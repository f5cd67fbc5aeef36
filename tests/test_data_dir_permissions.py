"""The data dir holds keys, secrets, the grant store and the audit log: the owner's alone."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from core.private_files import private_dir, private_file
from tests.conftest import running_stack


@pytest.fixture
def usual_umask() -> Iterator[None]:
    """The common 022, which leaves new files readable by everyone unless they are made otherwise."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def too_open(root: Path) -> list[str]:
    found = []
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            found.append(f"{path.relative_to(root.parent)} {oct(mode)}")
    return found


async def test_everything_the_stack_writes_is_owner_only(
    dev_env: WorkflowEnvironment, tmp_path: Path, usual_umask: None
) -> None:
    data = tmp_path / "deep" / "data"
    async with running_stack(dev_env, data) as stack:
        # A grant (grant store, audit log, codec and signing keys) and a dev token (its key).
        created = await stack.http.post(
            "/v1/requests",
            json={"resource": "k8s:prod/logs", "action": "read", "duration": "PT5M", "reason": "check perms"},
            headers=stack.auth("alice", "engineers"),
        )
        assert created.status_code == 201, created.text
        assert created.json()["status"] == "active", created.text
    names = {p.name for p in data.rglob("*")}
    assert {"grants.sqlite3", "audit.sqlite3", "dev-identity-key.pem", "signing-keys", "codec-keys"} <= names, names
    assert too_open(tmp_path / "deep") == []


def test_helpers_make_missing_parents_owner_only(tmp_path: Path, usual_umask: None) -> None:
    private_file(tmp_path / "a" / "b" / "file.sqlite3")
    private_dir(tmp_path / "c" / "d")
    assert too_open(tmp_path / "a") == [] and too_open(tmp_path / "c") == []
