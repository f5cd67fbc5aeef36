"""Is the stack up yet: Temporal answering with every ``Jit*`` search attribute, the API's
``/readyz`` saying 200; and the namespace's retention set once Temporal answers.

Each probe returns None when ready, else one line saying what is missing, which
``python -m devstack`` shows if the stack does not come up in time.
"""

from __future__ import annotations

import asyncio
import socket
import urllib.error
import urllib.request
from datetime import timedelta

from google.protobuf.duration_pb2 import Duration
from temporalio.api.namespace.v1 import NamespaceConfig
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest, UpdateNamespaceRequest
from temporalio.client import Client

from core.temporal import SEARCH_ATTRIBUTES

NAMESPACE = "default"


def probe_temporal(address: str) -> str | None:
    """None once Temporal answers and has every Jit* search attribute; else what is missing."""
    host, port = address.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError as e:
        return f"port closed ({e.strerror or e})"
    try:
        return asyncio.run(_probe_temporal(address))
    except Exception as e:  # any failure means "not yet"
        return f"{type(e).__name__}: {e}"


async def _probe_temporal(address: str) -> str | None:
    client = await asyncio.wait_for(Client.connect(address, namespace=NAMESPACE), timeout=3)
    registered = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=NAMESPACE), timeout=timedelta(seconds=2)
    )
    missing = [key.name for key in SEARCH_ATTRIBUTES if key.name not in registered.custom_attributes]
    return f"search attributes not registered: {', '.join(missing)}" if missing else None


async def set_retention(address: str, namespace: str, retention: timedelta) -> timedelta:
    """Set ``namespace``'s retention unless it already is that; returns what the server then reports."""
    client = await asyncio.wait_for(Client.connect(address, namespace=namespace), timeout=5)

    async def current() -> timedelta:
        described = await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=namespace), timeout=timedelta(seconds=5)
        )
        return described.config.workflow_execution_retention_ttl.ToTimedelta()

    # Only when it differs: a namespace update makes every service reload the namespace.
    if await current() == retention:
        return retention
    ttl = Duration()
    ttl.FromTimedelta(retention)
    await client.workflow_service.update_namespace(
        UpdateNamespaceRequest(namespace=namespace, config=NamespaceConfig(workflow_execution_retention_ttl=ttl)),
        timeout=timedelta(seconds=5),
    )
    return await current()


def probe_ready(url: str) -> str | None:
    """None once ``url`` answers 200; else what it said."""
    try:
        with urllib.request.urlopen(url, timeout=3) as response:  # noqa: S310 - our own http:// URL
            return None if response.status == 200 else f"HTTP {response.status}"
    except urllib.error.HTTPError as e:
        return f"HTTP {e.code} {e.read().decode(errors='replace')[:300]}"
    except (urllib.error.URLError, OSError) as e:
        return f"no answer ({getattr(e, 'reason', e)})"
