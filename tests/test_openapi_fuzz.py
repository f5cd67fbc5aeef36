"""Schemathesis against the real stack: no 5xx, and no answer the OpenAPI document does not describe.

Every operation of ``/openapi.json``, every check schemathesis has, in every
phase (the schema's examples, its boundary and type-violation coverage, random
fuzzing, stateful sequences), signed in as a user who may do most things (an
engineer who approves for db-owners and audits). Bounded in examples so it
takes a minute or two on 2 cores; the seed is fixed so a failure replays.

The engine is synchronous (requests): it runs on a thread while the API
answers on the test's event loop.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from schemathesis import openapi
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, events, from_schema

from tests.conftest import Stack, dev_server, running_stack

MAX_EXAMPLES = 25
ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]  # schemathesis' default


@dataclass
class Run:
    operations: set[str] = field(default_factory=set)
    cases: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    failures: dict[tuple[str, str, str], str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)


def fuzz(base_url: str, token: str) -> Run:
    config = SchemathesisConfig.from_dict(
        {
            "base-url": base_url,
            "seed": 20261125,
            "headers": {"Authorization": f"Bearer {token}"},
            "generation": {"max-examples": MAX_EXAMPLES},
            "checks": {
                "enabled": True,
                # A 422 for a body the schema allows is the catalog's or the policies' word (a
                # resource not in the catalog, a duration over its maximum, a page token this API
                # did not issue): documented as such, and not expressible in a schema.
                "positive_data_acceptance": {"expected-statuses": [*ACCEPTED, "422"]},
            },
            "workers": 1,
            # Longer than the API's own wait for a workflow update (30 s): when the machine is
            # slow, the API answers (a documented 503) before the client gives up on it.
            "request-timeout": 40,
            "operations": [
                {
                    # Schema-valid payloads that are not Temporal payloads (base64 that does not
                    # decode, a payload sealed with no key of ours) are the codec's 400, naming it.
                    "include-path-regex": "^/codec/",
                    "checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED, "400", "422"]}},
                }
            ],
        }
    )
    schema = openapi.from_url(f"{base_url}/openapi.json", config=config)
    run = Run()
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            rec = event.recorder
            for interaction in rec.interactions.values():
                run.cases += 1
                run.operations.add(rec.label)
                if interaction.response is not None:
                    run.statuses[interaction.response.status_code] += 1
            for checks in rec.checks.values():
                for check in checks:
                    if check.status == Status.FAILURE and check.failure_info is not None:
                        f = check.failure_info
                        key = (rec.label, check.name, f.failure.title)
                        run.failures.setdefault(
                            key, f"{' '.join(key)}: {f.failure.message[:300]}\n  {f.code_sample[:600]}"
                        )
        elif isinstance(event, events.NonFatalError):
            run.errors.append(f"{event.label}: {event.info.message if hasattr(event.info, 'message') else event.value}")
        elif isinstance(event, events.FatalError):
            raise event.exception
    return run


@pytest.fixture
async def own_stack(tmp_path: Path) -> AsyncIterator[Stack]:
    """A Temporal server of its own: the fuzzing auditor lists every request on its server, and on
    the shared one, requests other tests left behind have no worker any more (their reads are 503)."""
    async with dev_server() as env, running_stack(env, tmp_path / "data") as stack:
        yield stack


async def test_the_api_answers_as_its_openapi_document_says(own_stack: Stack) -> None:
    stack = own_stack
    token = stack.token("erin", "engineers", "db-owners", "auditors")
    run = await asyncio.to_thread(fuzz, stack.base_url, token)
    summary = (
        f"{len(run.operations)} operations, {run.cases} cases, {run.server_errors} 5xx, "
        f"{len(run.failures)} mismatches; statuses {dict(sorted(run.statuses.items()))}"
    )
    print(summary)
    assert not run.errors, run.errors
    assert run.server_errors == 0 and not run.failures, summary + "\n" + "\n".join(list(run.failures.values())[:40])
