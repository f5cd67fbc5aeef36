"""Dependencies shared by the routes: the caller, the services, the stores."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from temporalio.client import Client

from api.credentials import CredentialsService
from api.errors import Unauthorized, Unavailable
from api.identity import IdentityProviderUnavailable, IdentityVerifier, Unauthenticated
from api.policies import PolicyRuntime
from api.requests_service import RequestService
from core.keys import KeyRing
from core.logging import bind as bind_log_context
from core.models import Actor
from core.settings import Settings
from policy import PolicyEngine

_MISSING = "missing identity: send Authorization: Bearer <token>"
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def bearer_token(header: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header, or Unauthorized (401) saying why."""
    if header is None or not header.strip():
        raise Unauthorized(_MISSING, headers=_CHALLENGE)
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        # Name the scheme only if it is a plain word: never echo what might be a credential.
        shown = f" {scheme!r}" if scheme.isalpha() and len(scheme) <= 20 else ""
        raise Unauthorized(
            f"unsupported Authorization scheme{shown}: send Authorization: Bearer <token>", headers=_CHALLENGE
        )
    if not token.strip():
        raise Unauthorized(_MISSING, headers=_CHALLENGE)
    return token.strip()


async def authenticate(verifier: IdentityVerifier, header: str | None) -> Actor:
    """The caller of a request with this ``Authorization`` header: 401 if unknown, 503 if the IdP is down.

    Binds ``actor`` in the log context, for the access log. Routes take it as
    the ``CurrentUser`` dependency; introspection, served below FastAPI's
    dependency layer (api/routes/tokens.py), calls it directly.
    """
    token = bearer_token(header)
    try:
        actor = await verifier.authenticate(token)
    except Unauthenticated as e:
        raise Unauthorized(str(e), headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}) from e
    except IdentityProviderUnavailable as e:
        raise Unavailable(str(e), headers={"Retry-After": "5"}) from e
    bind_log_context(actor=actor.sub)  # the access log's "actor"
    return actor


async def current_user(request: Request) -> Actor:
    return await authenticate(request.app.state.identity, request.headers.get("authorization"))


def _state(name: str):  # type: ignore[no-untyped-def]
    # async on purpose: FastAPI runs a plain ``def`` dependency on its thread
    # pool, a thread hop per dependency per request (measured: most of an
    # introspection's cost, docs/benchmarks.md).
    async def get(request: Request):  # type: ignore[no-untyped-def]
        return getattr(request.app.state, name)

    return get


CurrentUser = Annotated[Actor, Depends(current_user)]
Requests = Annotated[RequestService, Depends(_state("requests"))]
Keys = Annotated[KeyRing, Depends(_state("keys"))]
CredentialsDep = Annotated[CredentialsService, Depends(_state("credentials"))]
Policies = Annotated[PolicyRuntime, Depends(_state("policies"))]


def current_engine(request: Request) -> PolicyEngine:
    """The policy engine to decide this call with (reloaded first if the files changed)."""
    runtime: PolicyRuntime = request.app.state.policies
    return runtime.engine()


async def _engine(request: Request) -> PolicyEngine:
    return current_engine(request)  # async: no thread hop (see _state)


Engine = Annotated[PolicyEngine, Depends(_engine)]
SettingsDep = Annotated[Settings, Depends(_state("settings"))]
TemporalClient = Annotated[Client, Depends(_state("temporal"))]
