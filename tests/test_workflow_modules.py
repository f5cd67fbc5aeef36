"""The worker passes every module through the sandbox (worker.py): imported once per
process, shared by every workflow run. That is only safe while the workflow modules
keep no mutable state at module level, which this test holds them to."""

from __future__ import annotations

import importlib
import pkgutil
import types
from datetime import timedelta
from enum import Enum

from temporalio.common import RetryPolicy, SearchAttributeKey

import workflows

# Immutable, or (RetryPolicy, SearchAttributeKey) never mutated once built: what a workflow module may define.
ALLOWED = (types.ModuleType, type, types.FunctionType, str, int, float, bool, bytes, timedelta, frozenset, tuple,
           RetryPolicy, SearchAttributeKey, Enum, type(None))  # fmt: skip


def test_workflow_modules_hold_no_mutable_module_state() -> None:
    found = []
    for info in pkgutil.iter_modules(workflows.__path__, "workflows."):
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if name.startswith("__") or name == "annotations":
                continue
            if not isinstance(value, ALLOWED) and not callable(value):
                found.append(f"{info.name}.{name}: {type(value).__name__}")
    assert found == [], f"module-level state in workflows/: {found}"


def test_the_check_catches_a_module_level_list() -> None:
    module = types.ModuleType("workflows.example")
    module.pending = []  # type: ignore[attr-defined]
    assert not isinstance(module.pending, ALLOWED)
