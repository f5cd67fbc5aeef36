"""The FastAPI application: ``uvicorn --factory api.app:create_app`` (``make run`` starts it).

One Temporal client, catalog, key ring and grant store per process, created at
start-up and shared by every request. The process holds no request state:
run as many replicas as you like.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import errors
from api.identity import IdentityVerifier
from api.page_tokens import PageTokens
from api.requests_service import RequestService
from api.routes import codec, health, requests, tokens
from core.catalog import Catalog
from core.grants import GrantStore
from core.keys import KeyRing
from core.settings import Settings, get_settings
from core.temporal import connect


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        catalog = Catalog.load(settings.catalog_path)
        client = await connect(settings)
        app.state.settings = settings
        app.state.catalog = catalog
        app.state.temporal = client
        app.state.identity = IdentityVerifier(settings)
        app.state.grants = GrantStore(settings.grants_db_path)
        app.state.keys = (
            KeyRing.from_pem(settings.signing_key_pem)
            if settings.signing_key_pem
            else KeyRing.load_or_create(settings.signing_keys_dir)
        )
        app.state.requests = RequestService(
            client, settings, catalog, PageTokens.from_signing_key(app.state.keys.active)
        )
        yield

    app = FastAPI(
        title="jit-access",
        version="0.1.0",
        summary="Just-in-time access requests: ask, get approved, get a token, lose it on time.",
        lifespan=lifespan,
    )
    errors.install(app)
    app.include_router(requests.router)
    app.include_router(tokens.router)
    app.include_router(health.router)
    app.include_router(codec.router)
    return app


