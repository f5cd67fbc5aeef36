"""The whole story through HTTP: request, approve, token, introspect, revoke."""

from __future__ import annotations

import jwt

from tests.conftest import Stack

ORDERS = "postgres:orders/public.orders"


async def create(stack: Stack, user: str, *groups: str, **body: object) -> dict:
    payload = {"resource": ORDERS, "action": "read", "duration": "PT15M", "reason": "debugging INC-1", **body}
    response = await stack.http.post("/v1/requests", json=payload, headers=stack.auth(user, *groups))
    assert response.status_code == 201, response.text
    return response.json()


async def test_request_approve_token_introspect_revoke(stack: Stack) -> None:
    alice = stack.auth("alice", "engineers")
    bob = stack.auth("bob", "db-owners")
    server = stack.auth("orders-db", "resource-servers")

    request = await create(stack, "alice", "engineers", ticket="INC-1")
    assert request["status"] == "pending"

    approved = await stack.http.post(f"/v1/requests/{request['id']}/approve", json={"comment": "ok"}, headers=bob)
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "active"
    assert [a["approver"] for a in approved.json()["approvals"]] == ["bob"]

    creds = await stack.http.get(f"/v1/requests/{request['id']}/credentials", headers=alice)
    assert creds.status_code == 200, creds.text
    token = creds.json()["access_token"]

    # A resource server verifies offline with the published keys, RS256 (the default) only.
    jwks = (await stack.http.get("/.well-known/jwks.json")).json()
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "at+jwt"
    key = jwt.PyJWK({k: v for k, v in next(k for k in jwks["keys"] if k["kid"] == header["kid"]).items()})
    claims = jwt.decode(token, key.key, algorithms=["RS256"], audience=ORDERS, issuer=stack.settings.token_issuer)
    assert (claims["sub"], claims["scope"], claims["jti"]) == ("alice", "read", request["id"])
    assert claims["exp"] <= jwt.api_jwt.datetime.fromisoformat(approved.json()["expires_at"]).timestamp()

    active = await stack.http.post("/v1/introspect", data={"token": token}, headers=server)
    assert active.json()["active"] is True
    assert active.json()["sub"] == "alice"

    revoked = await stack.http.post(f"/v1/requests/{request['id']}/revoke", json={"reason": "done"}, headers=alice)
    assert revoked.json()["status"] == "revoked"
    assert revoked.json()["revocation"]["actor"] == "alice"

    inactive = await stack.http.post("/v1/introspect", data={"token": token}, headers=server)
    assert inactive.json() == {"active": False}
    gone = await stack.http.get(f"/v1/requests/{request['id']}/credentials", headers=alice)
    assert gone.status_code == 409


async def test_requester_cannot_approve_own_request(stack: Stack) -> None:
    request = await create(stack, "alice", "engineers", "db-owners")
    response = await stack.http.post(
        f"/v1/requests/{request['id']}/approve", json={}, headers=stack.auth("alice", "engineers", "db-owners")
    )
    assert response.status_code == 403
    assert "own request" in response.json()["error"]["message"]


async def test_non_approver_cannot_approve(stack: Stack) -> None:
    request = await create(stack, "alice", "engineers")
    # carol can see it (approver of another group is not enough): she gets 404, not a hint.
    response = await stack.http.post(
        f"/v1/requests/{request['id']}/approve", json={}, headers=stack.auth("carol", "engineers")
    )
    assert response.status_code == 404
    # dave is in an approver group of the catalog but not of this resource... same: 404.
    # An auditor can see it, yet may not approve it.
    auditor = await stack.http.post(
        f"/v1/requests/{request['id']}/approve", json={}, headers=stack.auth("erin", "auditors")
    )
    assert auditor.status_code == 403


async def test_other_users_cannot_see_a_request(stack: Stack) -> None:
    request = await create(stack, "alice", "engineers")
    mallory = stack.auth("mallory", "engineers")
    assert (await stack.http.get(f"/v1/requests/{request['id']}", headers=mallory)).status_code == 404
    listed = await stack.http.get("/v1/requests", headers=mallory)
    assert request["id"] not in [i["id"] for i in listed.json()["items"]]
    mine = await stack.http.get("/v1/requests", params={"mine": "true"}, headers=stack.auth("alice", "engineers"))
    assert request["id"] in [i["id"] for i in mine.json()["items"]]
