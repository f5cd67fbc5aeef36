"""The wall clock, read as a local activity so that the workflow can use it deterministically.

``workflow.now()`` is when the current workflow task began. After local
activities ran in that task (grant-store and audit writes) it lags real time by
their duration, so a timer computed from it to end at the grant's expiry would
fire that much late. The reading is recorded in history like any result.
"""

from __future__ import annotations

from datetime import UTC, datetime

from temporalio import activity


@activity.defn
def read_clock() -> datetime:
    return datetime.now(UTC)
