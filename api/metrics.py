"""The API's metrics (``GET /metrics``, Prometheus text) and its access log.

One small ASGI middleware times every HTTP request and, once it is answered:

- counts it in ``jit_http_requests_total{method, route, status}`` and observes
  ``jit_http_request_duration_seconds{method, route}``. ``route`` is the route's
  template (``/v1/requests/{request_id}``), never the raw path, so the number of
  series stays bounded; a path no route matches is ``<unmatched>``;
- logs one access line (logger ``jit.api.access``) with method, route, path,
  status, duration_ms and, where known, the caller's ``actor`` (its ``sub``,
  bound by api.deps.authenticate) and the ``request_id`` from the path.
  Never a header, a query string or a body: no token reaches the log.

Machine traffic answered fine is logged at DEBUG, everything else at INFO (5xx
at WARNING): ``/healthz``, ``/readyz`` and ``/metrics`` (load balancers' probes,
Prometheus' scrapes) and ``POST /v1/introspect``, which resource servers call on
every request they serve, so one INFO line each would make the access log
mostly introspections, and writing them was a third of an introspection's cost.
They are counted in the metrics all the same; a refused or failed one (4xx, 5xx)
is still logged at INFO or WARNING, with its ``actor`` where known.

The registry is the app's own (``app.state.http_metrics``): one per process;
with several uvicorn worker processes, scrape each (or run one per container).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.logging import log_context

access_log = logging.getLogger("jit.api.access")

UNMATCHED = "<unmatched>"
# Machine traffic, logged at DEBUG unless it fails: load balancers' probes, Prometheus'
# scrapes, and introspection (a resource server asks on every request it serves).
_QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics", "/v1/introspect"})
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Most calls are a grant-store read or one Temporal round trip; approve and
# revoke wait for the workflow, create may wait for provisioning (settle_wait_s).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class HttpMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "jit_http_requests",
            "HTTP requests answered, by method, route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "jit_http_request_duration_seconds",
            "Time to answer an HTTP request, by method and route template",
            ["method", "route"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        # The labelled children, looked up once per (method, route, status): .labels()
        # validates and locks on every call. Bounded like the series themselves.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, method: str, route: str, status: int, elapsed: float) -> None:
        children = self._children.get((method, route, status))
        if children is None:
            children = self.requests.labels(method, route, str(status)), self.duration.labels(method, route)
            self._children[(method, route, status)] = children
        children[0].inc()
        children[1].observe(elapsed)


def route_template(scope: Scope) -> str:
    """The matched route's path template (set on the scope by the router), else ``<unmatched>``."""
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return template if isinstance(template, str) else UNMATCHED


class ObservabilityMiddleware:
    """Metrics and the access log for every HTTP request; a log context for everything it logs."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless the app answers: an exception escaping it becomes a 500

        async def send_and_see(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        with log_context() as context:
            try:
                await self.app(scope, receive, send_and_see)
            finally:
                self._record(scope, status, time.perf_counter() - started, context)

    def _record(self, scope: Scope, status: int, elapsed: float, context: dict[str, Any]) -> None:
        method = scope.get("method", "GET")
        method = method if method in _METHODS else "OTHER"
        route = route_template(scope)
        self.metrics.observe(method, route, status, elapsed)
        if status >= 500:
            level = logging.WARNING
        elif route in _QUIET_ROUTES and status < 400:
            level = logging.DEBUG
        else:
            level = logging.INFO
        if not access_log.isEnabledFor(level):
            return  # most introspections: no record built at all
        request_id = (scope.get("path_params") or {}).get("request_id")
        if isinstance(request_id, str) and request_id:
            context.setdefault("request_id", request_id)
        access_log.log(
            level,
            "%s %s %d %.1fms",
            method,
            route,
            status,
            elapsed * 1000,
            extra={
                "method": method,
                "route": route,
                "path": scope.get("path", ""),
                "status": status,
                "duration_ms": round(elapsed * 1000, 1),
            },
        )


router = APIRouter(tags=["health"])


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus text: this process's HTTP metrics."""
    registry: CollectorRegistry = request.app.state.http_metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
