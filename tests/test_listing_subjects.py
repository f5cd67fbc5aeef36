"""Subjects as identity providers spell them list like any other: escaped in the visibility query, never refused.

``auth0|123``, an email with an apostrophe, a URL, spaces and accents: each requester finds their own
requests, and an auditor's ``requester=`` filter finds exactly theirs. A filter value that tries to
close the string and widen the query finds nothing it should not.
"""

from __future__ import annotations

import pytest

from tests.conftest import Stack
from tests.e2e_support import wait_until

SUBJECTS = ["auth0|123", "o'brien@example.com", "https://idp.example/users/7", "Jürgen Groß"]
LOGS = "k8s:prod/logs"  # auto-approved in tests/catalog.yaml


async def _listed(stack: Stack, headers: dict[str, str], **params: str) -> list[str] | None:
    page = await stack.http.get("/v1/requests", params=params, headers=headers)
    assert page.status_code == 200, page.text
    return [i["id"] for i in page.json()["items"]] or None


@pytest.mark.parametrize("subject", SUBJECTS)
async def test_a_requester_spelled_by_an_identity_provider_lists_their_requests(stack: Stack, subject: str) -> None:
    mine = stack.auth(subject, "engineers")
    created = await stack.http.post(
        "/v1/requests", json={"resource": LOGS, "action": "read", "duration": "PT5M", "reason": "INC-5"}, headers=mine
    )
    assert created.status_code == 201, created.text
    request_id = created.json()["id"]

    found = await wait_until(lambda: _listed(stack, mine, mine="true"), what="the request in the requester's list")
    assert found == [request_id]
    auditor = stack.auth("erin", "auditors")
    by_filter = await wait_until(lambda: _listed(stack, auditor, requester=subject), what="the auditor's filter")
    assert by_filter == [request_id]


async def test_a_filter_value_cannot_widen_the_query(stack: Stack) -> None:
    created = await stack.http.post(
        "/v1/requests",
        json={"resource": LOGS, "action": "read", "duration": "PT5M", "reason": "INC-5"},
        headers=stack.auth("alice", "engineers"),
    )
    assert created.status_code == 201
    auditor = stack.auth("erin", "auditors")
    await wait_until(lambda: _listed(stack, auditor, requester="alice"), what="alice's request listed")
    sneaky = await stack.http.get("/v1/requests", params={"requester": "x' OR JitRequester != 'x"}, headers=auditor)
    assert sneaky.status_code == 200 and sneaky.json()["items"] == []
    control = await stack.http.get("/v1/requests", params={"requester": "a\x1bb"}, headers=auditor)
    assert control.status_code in (400, 422)


@pytest.mark.parametrize("value", ["DOMAIN\\user", 'say "hi"'])
async def test_a_backslash_or_double_quote_is_refused_naming_the_rule(stack: Stack, value: str) -> None:
    # Temporal's query language has no reliable spelling for them (the one restriction left).
    answer = await stack.http.get("/v1/requests", params={"requester": value}, headers=stack.auth("erin", "auditors"))
    assert answer.status_code == 422
    assert "backslash or a double quote" in answer.json()["error"]["message"]
