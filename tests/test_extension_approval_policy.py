"""An extension waiting for approval is decided under the same Cedar rules as the request.

On the example policies a production approval needs MFA: so does the approval of
an extension, and a pending extension is in the approvers' "to approve" list.
"""

from __future__ import annotations

from tests.conftest import Stack
from tests.e2e_support import wait_until

ORDERS = "postgres:orders/public.orders"  # production, reapprove_extensions: true


async def test_extension_approval_needs_mfa_and_is_listed_to_approve(example_stack: Stack) -> None:
    stack = example_stack
    alice = stack.auth("alice", "engineers")
    created = await stack.http.post(
        "/v1/requests",
        json={"resource": ORDERS, "action": "read", "duration": "PT15M", "reason": "INC-4"},
        headers=alice,
    )
    assert created.status_code == 201, created.text
    request_id = created.json()["id"]
    approved = await stack.http.post(
        f"/v1/requests/{request_id}/approve", json={}, headers=stack.auth("bob", "db-owners", mfa=True)
    )
    assert approved.json()["status"] == "active", approved.text
    expires_at = approved.json()["expires_at"]

    extend = await stack.http.post(
        f"/v1/requests/{request_id}/extend", json={"duration": "PT15M", "reason": "migration"}, headers=alice
    )
    assert extend.status_code == 200 and extend.json()["pending_extension"] is not None

    async def listed_for_bob() -> list[str]:
        page = await stack.http.get(
            "/v1/requests", params={"to_approve": "true"}, headers=stack.auth("bob", "db-owners")
        )
        return [i["id"] for i in page.json()["items"]]

    # Visibility is eventually consistent: the list shows it within moments.
    await wait_until(lambda: _has(listed_for_bob(), request_id), what="the extension in bob's to-approve list")
    mine = await stack.http.get("/v1/requests", params={"to_approve": "true"}, headers=alice)
    assert request_id not in [i["id"] for i in mine.json()["items"]]

    without_mfa = await stack.http.post(
        f"/v1/requests/{request_id}/approve", json={}, headers=stack.auth("bob", "db-owners")
    )
    assert without_mfa.status_code == 403
    assert "MFA" in without_mfa.json()["error"]["message"]
    unchanged = await stack.http.get(f"/v1/requests/{request_id}", headers=alice)
    assert unchanged.json()["expires_at"] == expires_at and unchanged.json()["pending_extension"] is not None

    with_mfa = await stack.http.post(
        f"/v1/requests/{request_id}/approve", json={}, headers=stack.auth("bob", "db-owners", mfa=True)
    )
    assert with_mfa.status_code == 200, with_mfa.text
    assert with_mfa.json()["pending_extension"] is None and with_mfa.json()["expires_at"] > expires_at
    await wait_until(lambda: _has(listed_for_bob(), request_id, present=False), what="the list without it")


async def _has(ids, request_id: str, present: bool = True) -> bool | None:  # type: ignore[no-untyped-def]
    return True if (request_id in await ids) == present else None
