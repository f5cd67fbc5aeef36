"""Liveness and readiness for load balancers and ``make run``."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest, GetSystemInfoRequest
from temporalio.client import Client
from temporalio.service import RPCError

from api.openapi_errors import documented
from core.settings import Settings

router = APIRouter(tags=["health"])
_TIMEOUT = timedelta(seconds=2)


class Readiness(BaseModel):
    status: str = Field(examples=["ok"])  # "ok", or "unavailable" with the 503
    checks: dict[str, str]  # temporal, worker, policy: "ok" or what is wrong
    policy: dict[str, object] | None = None


@router.get("/healthz", responses=documented())
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={**documented(), 503: {"model": Readiness, "description": "not ready: `checks` says what is not"}},
)
async def readyz(request: Request) -> JSONResponse:
    """Ready when the policies are loaded, Temporal answers and a worker polls the task queue."""
    client: Client = request.app.state.temporal
    settings: Settings = request.app.state.settings
    checks: dict[str, str] = {}
    try:
        await client.workflow_service.get_system_info(GetSystemInfoRequest(), timeout=_TIMEOUT)
        checks["temporal"] = "ok"
        queue = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=settings.temporal_namespace,
                task_queue=TaskQueue(name=settings.task_queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            ),
            timeout=_TIMEOUT,
        )
        checks["worker"] = "ok" if queue.pollers else "no worker is polling the task queue"
    except RPCError as e:
        checks["temporal"] = f"unreachable ({e.status.name})"
    policy = _policy(request)
    checks["policy"] = "ok" if policy is not None else "not loaded"
    ready = all(v == "ok" for v in checks.values())
    body: dict[str, object] = {"status": "ok" if ready else "unavailable", "checks": checks}
    if policy is not None:
        body["policy"] = policy
    return JSONResponse(body, status_code=200 if ready else 503)


def _policy(request: Request) -> dict[str, object] | None:
    """The policies deciding now: their version, and whether the last reload failed (the last good rules stay)."""
    runtime = getattr(request.app.state, "policies", None)
    if runtime is None:
        return None
    holder = getattr(runtime, "holder", None)
    errors = list(getattr(holder, "last_errors", None) or [])
    return {"version": runtime.version, "last_reload_failed": bool(errors)}
