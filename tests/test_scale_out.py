"""Stateless scale-out: two workers and two APIs, nothing shared but Temporal and PostgreSQL.

Four processes, each with its own empty data dir; the same ``JIT_DATABASE_URL``
and the same secrets from settings (signing key, codec keys, password secret),
callers signed in by an identity provider (its JWKS served by the test).
Requests are spread over both APIs; one worker and one API are SIGKILLed while
requests are in flight (a create that dies with its API is retried on the other
with the same Idempotency-Key), a fresh API takes the dead one's place. Then:
every request ends in the state it should, a token minted by one API is active
on the other and verifies with the other's JWKS, a revoke is seen by both APIs
within 1 s, and nothing was done twice (one grant row, one of each audit event).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import jwt
from temporalio.testing import WorkflowEnvironment

from tests.e2e_support import wait_until
from tests.pg import PgDatabase, pg_cluster, pg_db  # noqa: F401
from tests.scale_out_support import Issuer, Process, running_issuer, shared_env

ORDERS = "postgres:orders/public.orders"  # one approval from db-owners
LOGS = "k8s:prod/logs"  # auto-approved: POST waits for the grant, the longest call in flight
N = 16


async def test_two_workers_two_apis_share_only_temporal_and_postgres(
    dev_env: WorkflowEnvironment,
    pg_db: PgDatabase,  # noqa: F811
    tmp_path: Path,
) -> None:
    client = dev_env.client
    with running_issuer() as issuer:
        env = shared_env(client.service_client.config.target_host, client.namespace, pg_db.dsn, issuer)
        procs = [Process(kind, f"{kind}-{x}", tmp_path, env) for kind in ("worker", "api") for x in ("a", "b")]
        try:
            for p in procs:
                await p.start()
            await asyncio.gather(*(p.ready() for p in procs if p.kind == "api"))
            await scenario(issuer, procs, pg_db, tmp_path, env)
        except BaseException:
            print("\n".join(p.tail() for p in procs), file=sys.stderr)
            raise
        finally:
            await asyncio.gather(*(p.stop() for p in procs))


async def scenario(issuer: Issuer, procs: list[Process], db: PgDatabase, workdir: Path, env: dict[str, str]) -> None:
    worker_a, _, api_a, api_b = procs
    alice, bob = issuer.auth("alice", "engineers"), issuer.auth("bob", "db-owners")
    server = issuer.auth("orders-db", "resource-servers")
    async with httpx.AsyncClient(timeout=60) as http:

        async def create(i: int) -> dict[str, Any]:
            body = {"resource": LOGS if i // 2 % 2 else ORDERS, "action": "read", "duration": "PT30M", "reason": "s"}
            headers = {**alice, "Idempotency-Key": f"scale-out-{i}"}
            url = (api_a, api_b)[i % 2].url
            deadline = time.monotonic() + 60
            while True:
                try:
                    r = await http.post(f"{url}/v1/requests", json=body, headers=headers)
                    # 503: the request's workflow did not answer yet (its task was on the killed
                    # worker until the other one takes it over): "try again shortly", as documented.
                    if r.status_code != 503 or time.monotonic() > deadline:
                        break
                except httpx.TransportError:  # its API died under it: the same request, to the other one
                    if url == api_b.url:
                        raise
                    url = api_b.url
                await asyncio.sleep(0.2)
            assert r.status_code in (200, 201), r.text
            return r.json()

        creating = [asyncio.create_task(create(i)) for i in range(N)]

        async def some_answered() -> bool:
            return sum(t.done() for t in creating) >= 4

        await wait_until(some_answered, timeout=60, what="the first answers")
        await asyncio.gather(worker_a.kill(), api_a.kill())
        requests = await asyncio.gather(*creating)
        assert len({r["id"] for r in requests}) == N

        api_c = await Process("api", "api-c", workdir, env).start()  # a fresh replica, an empty data dir
        procs.append(api_c)
        await api_c.ready()
        apis = (api_b, api_c)

        for i, r in enumerate(requests):
            if r["resource"] == ORDERS:
                approved = await http.post(f"{apis[i % 2].url}/v1/requests/{r['id']}/approve", json={}, headers=bob)
                assert approved.status_code == 200, approved.text

        async def status(i: int) -> str:
            got = await http.get(f"{apis[i % 2].url}/v1/requests/{requests[i]['id']}", headers=alice)
            assert got.status_code == 200, got.text
            return got.json()["status"]

        async def all_active() -> bool:
            return all(s == "active" for s in await asyncio.gather(*(status(i) for i in range(N))))

        await wait_until(all_active, timeout=60, what="every request active")

        jwks = [(await http.get(f"{api.url}/.well-known/jwks.json")).json() for api in apis]
        assert jwks[0] == jwks[1]

        async def introspect(api: Process, token: str) -> dict[str, Any]:
            answer = await http.post(f"{api.url}/v1/introspect", data={"token": token}, headers=server)
            assert answer.status_code == 200, answer.text
            return answer.json()

        tokens = []
        for i, r in enumerate(requests):
            creds = await http.get(f"{apis[i % 2].url}/v1/requests/{r['id']}/credentials", headers=alice)
            assert creds.status_code == 200, creds.text
            token = creds.json()["access_token"]
            tokens.append(token)
            other = apis[(i + 1) % 2]
            assert (await introspect(other, token))["active"] is True
            key = jwt.PyJWK(
                next(k for k in jwks[1 - i % 2]["keys"] if k["kid"] == jwt.get_unverified_header(token)["kid"])
            )
            assert jwt.decode(token, key.key, algorithms=[key.algorithm_name], audience=r["resource"])["jti"] == r["id"]

        revoked = set(range(0, N, 2))
        for i in sorted(revoked):
            answer = await http.post(
                f"{apis[i % 2].url}/v1/requests/{requests[i]['id']}/revoke", json={"reason": "done"}, headers=alice
            )
            assert answer.json()["status"] == "revoked", answer.text
            seen_by = {api.name: await seen_inactive_within(introspect, api, tokens[i], 1.0) for api in apis}
            assert all(seen_by.values()), (i, seen_by)
        for i in set(range(N)) - revoked:
            assert [(await introspect(api, tokens[i]))["active"] for api in apis] == [True, True]
            assert await status(i) == "active"

    # Nothing done twice: one grant row per request, one of each audit event.
    rows = dict(db.execute("SELECT request_id, revoked_at IS NOT NULL FROM jit_grants"))
    assert rows == {r["id"]: i in revoked for i, r in enumerate(requests)}

    def stories() -> dict[str, Counter[str]]:
        found: dict[str, Counter[str]] = {r["id"]: Counter() for r in requests}
        for rid, kind in db.execute("SELECT body::jsonb->>'request_id', body::jsonb->>'type' FROM jit_audit"):
            found[rid][kind] += 1
        return found

    async def all_revokes_audited() -> bool:
        return all(stories()[requests[i]["id"]]["revoked"] == 1 for i in revoked)

    await wait_until(all_revokes_audited, timeout=30, what="every revoke in the audit log")
    for i, r in enumerate(requests):
        story = stories()[r["id"]]
        expected = {"requested", "provisioned"} | ({"approved"} if r["resource"] == ORDERS else set())
        expected |= {"revoked"} if i in revoked else set()
        assert story == Counter(expected), (r["id"], story)


async def seen_inactive_within(introspect: Any, api: Process, token: str, seconds: float) -> bool:
    """Whether ``api`` answers inactive for ``token`` within ``seconds`` (polled, never waited out)."""
    deadline = time.monotonic() + seconds
    while True:
        if (await introspect(api, token))["active"] is False:
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
