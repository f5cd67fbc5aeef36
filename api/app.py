"""The FastAPI application: ``uvicorn --factory api.app:create_app`` (``make run`` starts it).

One Temporal client, policy engine (with the catalog), key ring and grant store
per process, created at start-up and shared by every request. The process holds
no request state: run as many replicas as you like.

The policies (``JIT_POLICIES_DIR`` with ``JIT_CATALOG_PATH``) must load, or the
API refuses to start, printing every problem as ``file:line: message`` (as
``jit policy check`` does). They are reloaded on SIGHUP and when their files
change; a broken reload keeps the last good rules (api/policies.py).

Built by uvicorn (no ``settings``), it also sets up the process's logging
(``JIT_LOG_FORMAT``, core/logging.py); ``GET /metrics`` and the access log come
from api/metrics.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import errors, openapi_errors, ui
from api.body_limit import BodyLimitMiddleware
from api.credentials import CredentialsService
from api.duplicate_keys import DuplicateKeysMiddleware
from api.identity import IdentityVerifier
from api.metrics import HttpMetrics, ObservabilityMiddleware
from api.metrics import router as metrics_router
from api.page_tokens import PageTokens
from api.policies import Clock, PolicyRuntime, utc_now
from api.recent_grants import RecentGrants
from api.requests_service import RequestService
from api.routes import audit, catalog, codec, dev, health, requests, slack, tokens
from core.access_tokens import VerifiedTokens
from core.grant_store import open_grant_store
from core.keys import load_key_ring
from core.logging import setup_logging
from core.notify_config import load_notifications
from core.settings import Settings, get_settings
from core.temporal import connect
from policy import PolicyError

log = logging.getLogger("jit.api")


def load_policies(settings: Settings, clock: Clock = utc_now) -> PolicyRuntime:
    """The policies and the catalog, or PolicyError after logging each problem as ``file:line: message``."""
    try:
        runtime = PolicyRuntime.load(
            settings.policies_dir, settings.catalog_path, check_interval_s=settings.policy_check_interval_s, clock=clock
        )
    except PolicyError as e:
        for error in e.errors:
            log.error("%s", error)
        log.error("%d problem(s) in %s / %s: not starting", len(e.errors), settings.policies_dir, settings.catalog_path)
        raise
    # Which files: the defaults are the example shipped with the program (core/settings.py).
    log.info("policies from %s, catalog from %s", settings.policies_dir, settings.catalog_path)
    return runtime


def create_app(settings: Settings | None = None, *, policy_clock: Clock = utc_now) -> FastAPI:
    """``policy_clock``: the instant the policies judge (time-of-day rules); tests pin it.

    Without ``settings`` (uvicorn's factory call) the process's logging is set up
    too; with them (tests, embedders) logging stays the caller's.
    """
    if settings is None:
        settings = get_settings()
        setup_logging(settings.log_format, settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        policies = load_policies(settings, policy_clock)  # before anything else: a bad policy stops here
        client = await connect(settings)
        app.state.settings = settings
        app.state.policies = policies
        app.state.temporal = client
        app.state.identity = IdentityVerifier(settings)
        app.state.notifications = load_notifications(settings.notifications_path)
        app.state.grants = open_grant_store(settings)
        app.state.recent_grants = RecentGrants(app.state.grants, settings.introspection_cache_s)
        app.state.keys = load_key_ring(settings)
        app.state.verified_tokens = VerifiedTokens(app.state.keys, issuer=settings.token_issuer)
        app.state.requests = RequestService(
            client,
            settings,
            policies,
            PageTokens.from_signing_key(app.state.keys.active),
            app.state.grants,
            app.state.notifications,
            app.state.recent_grants,
        )
        app.state.credentials = CredentialsService(
            app.state.requests, app.state.grants, app.state.keys, policies, settings
        )
        loop = asyncio.get_running_loop()
        policies.install_sighup(loop)
        try:
            yield
        finally:
            policies.remove_sighup(loop)
            app.state.grants.close()

    app = FastAPI(
        title="jit-access",
        version="0.1.0",
        summary="Just-in-time access requests: ask, get approved, get a token, lose it on time.",
        lifespan=lifespan,
    )
    errors.install(app)
    app.state.http_metrics = HttpMetrics()
    # Added innermost first: the access log and metrics see the 413s and 400s these answer.
    app.add_middleware(DuplicateKeysMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(ObservabilityMiddleware, metrics=app.state.http_metrics)
    tokens.install(app)  # first: the busiest route is matched first
    app.include_router(metrics_router)
    app.include_router(requests.router)
    app.include_router(catalog.router)
    app.include_router(tokens.router)
    app.include_router(health.router)
    app.include_router(codec.router)
    app.include_router(audit.router)
    app.include_router(slack.router)
    if settings.dev_identity:  # absent, not refused, without the dev issuer: api/routes/dev.py
        app.include_router(dev.router)
    ui.install(app, settings)  # the web page under /ui (api/ui/)
    openapi_errors.install(app)
    return app
