"""Temporal beyond the dev server: TLS, mutual TLS and an API key, through nginx in front of it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from core.temporal import connect
from tests.conftest import make_settings, running_stack
from tests.tls_proxy import API_KEY, Proxy, nginx_proxy


@pytest.fixture
def proxy(dev_env: WorkflowEnvironment, tmp_path: Path) -> Iterator[Proxy]:
    with nginx_proxy(dev_env.client.service_client.config.target_host, tmp_path / "nginx") as p:
        yield p


async def reachable(settings) -> bool:  # noqa: ANN001
    try:
        client = await connect(settings)
        await client.count_workflows()
    except Exception:  # noqa: BLE001 - any refusal: TLS handshake, certificate, 401
        return False
    return True


async def test_a_request_runs_through_tls_with_an_api_key(
    dev_env: WorkflowEnvironment, proxy: Proxy, tmp_path: Path
) -> None:
    """Worker and API both on the TLS listener: a request is filed, granted and revoked."""
    tls = {"temporal_address": proxy.tls_address, "temporal_tls_ca_path": proxy.certs.ca, "temporal_api_key": API_KEY}
    async with running_stack(dev_env, tmp_path / "data", **tls) as stack:
        body = {"resource": "k8s:prod/logs", "action": "read", "duration": "PT15M", "reason": "INC-9"}
        filed = await stack.http.post("/v1/requests", json=body, headers=stack.auth("alice", "engineers"))
        assert filed.status_code == 201 and filed.json()["status"] == "active", filed.text
        revoked = await stack.http.post(
            f"/v1/requests/{filed.json()['id']}/revoke", json={"reason": "done"}, headers=stack.auth("alice")
        )
        assert revoked.json()["status"] == "revoked"


async def test_tls_refuses_an_unknown_server_and_a_missing_api_key(
    dev_env: WorkflowEnvironment, proxy: Proxy, tmp_path: Path
) -> None:
    base = make_settings(dev_env.client, tmp_path, temporal_address=proxy.tls_address)
    good = base.model_copy(update={"temporal_tls_ca_path": proxy.certs.ca, "temporal_api_key": API_KEY})
    assert await reachable(good)
    # The system's CAs do not know the test CA: the server is not trusted.
    assert not await reachable(base.model_copy(update={"temporal_api_key": API_KEY}))
    assert not await reachable(base.model_copy(update={"temporal_tls_ca_path": proxy.certs.ca}))  # no key: 401
    assert not await reachable(base)  # plaintext to a TLS port


async def test_mutual_tls_needs_a_client_certificate_of_the_ca(
    dev_env: WorkflowEnvironment, proxy: Proxy, tmp_path: Path
) -> None:
    certs = proxy.certs
    base = make_settings(dev_env.client, tmp_path, temporal_address=proxy.mtls_address, temporal_tls_ca_path=certs.ca)
    with_cert = {"temporal_tls_cert_path": certs.client_cert, "temporal_tls_key_path": certs.client_key}
    assert await reachable(base.model_copy(update=with_cert))
    assert not await reachable(base)
    stranger = {"temporal_tls_cert_path": certs.stranger_cert, "temporal_tls_key_path": certs.stranger_key}
    assert not await reachable(base.model_copy(update=stranger))


def test_half_a_client_certificate_is_refused_at_start(tmp_path: Path) -> None:
    from core.settings import Settings

    with pytest.raises(ValueError, match="JIT_TEMPORAL_TLS_CERT_PATH and JIT_TEMPORAL_TLS_KEY_PATH"):
        Settings(_env_file=None, temporal_tls_cert_path=tmp_path / "c.crt")  # type: ignore[call-arg]
