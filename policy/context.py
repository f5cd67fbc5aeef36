"""The facts a policy sees: Cedar entities and contexts, built the same way for every call.

Kept apart from the engine so that what a policy can rely on is in one place,
next to config/policies/schema.cedarschema which types it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from core.catalog import CatalogEntry
from core.models import Actor

NS = "Jit"
SERVICE_ID = "jit-access"
# RFC 8176 authentication method references that mean a second factor.
MFA_AMR = frozenset({"mfa", "otp", "hwk"})
# acr values that assert a multi-factor login: the OpenID PAPE one and the common short forms.
MFA_ACR = frozenset({"mfa", "phr", "phrh", "http://schemas.openid.net/pape/policies/2007/06/multi-factor"})


def mfa_from_claims(claims: Mapping[str, Any], acr_values: Iterable[str] = MFA_ACR) -> bool:
    """Whether an identity token shows a second factor: its ``amr`` names one, or its ``acr`` says so."""
    amr = claims.get("amr")
    if isinstance(amr, str):
        amr = [amr]
    if isinstance(amr, list) and MFA_AMR & {a for a in amr if isinstance(a, str)}:
        return True
    acr = claims.get("acr")
    return isinstance(acr, str) and acr in set(acr_values)


def uid(kind: str, ident: str) -> dict[str, str]:
    # The dict form takes any id (no Cedar string escaping to get wrong).
    return {"type": f"{NS}::{kind}", "id": ident}


def resource_entity(entry: CatalogEntry) -> dict[str, Any]:
    attrs = {
        "id": entry.id,
        "kind": entry.kind or "generic",
        "environment": entry.environment,
        "sensitivity": entry.sensitivity,
    }
    return {"uid": uid("Resource", entry.id), "attrs": attrs, "parents": []}


def unlisted_resource_entity(resource: str) -> dict[str, Any]:
    """A resource no longer in the catalog: revoking or approving it must still be decidable.

    Judged as strictly as the policies can see it (production, restricted), so a
    rule written for the worst case applies rather than silently not matching."""
    attrs = {
        "id": resource,
        "kind": resource.split(":", 1)[0],
        "environment": "production",
        "sensitivity": "restricted",
    }
    return {"uid": uid("Resource", resource), "attrs": attrs, "parents": []}


def service_entity() -> dict[str, Any]:
    return {"uid": uid("Service", SERVICE_ID), "attrs": {}, "parents": []}


def user_json(sub: str, groups: Iterable[str]) -> str:
    parents = [uid("Group", g) for g in dict.fromkeys(groups)]
    return json.dumps([{"uid": uid("User", sub), "attrs": {}, "parents": parents}])


def principal_kind(actor: Actor) -> str:
    """A person is a Jit::User, a workload a Jit::Service (schema.cedarschema)."""
    return "Service" if actor.kind == "service" else "User"


def principal_uid(actor: Actor) -> dict[str, str]:
    return uid(principal_kind(actor), actor.sub)


def principal_json(actor: Actor) -> str:
    """The caller as a Cedar entity: a workload carries the attributes its issuer maps."""
    if actor.kind != "service":
        return user_json(actor.sub, actor.groups)
    parents = [uid("Group", g) for g in dict.fromkeys(actor.groups)]
    return json.dumps([{"uid": principal_uid(actor), "attrs": dict(actor.attributes), "parents": parents}])


def request_context(
    *, action: str, duration_s: int, reason: str, ticket: str | None, break_glass: bool, mfa: bool, now: datetime
) -> dict[str, Any]:
    at = now.astimezone(UTC) if now.tzinfo else now.replace(tzinfo=UTC)  # naive means UTC
    return {
        "action": action,
        "duration_s": int(duration_s),
        "reason": reason,
        "has_ticket": bool(ticket and ticket.strip()),
        "ticket": ticket or "",
        "hour": at.hour,
        "weekday": at.isoweekday(),
        "break_glass": break_glass,
        "mfa": mfa,
    }
