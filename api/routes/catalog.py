"""``GET /v1/catalog``: what the caller may request, as the policies decide it now."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import CurrentUser, Engine, Policies
from api.openapi_errors import SIGNED_IN, documented
from policy import CatalogView

router = APIRouter(prefix="/v1", tags=["catalog"])


@router.get("/catalog", responses=documented(*SIGNED_IN))
async def catalog(user: CurrentUser, engine: Engine, policies: Policies) -> list[CatalogView]:
    """Each resource the caller may ask for (or break glass on), with per action: the longest
    duration they may ask for, whether and up to when it is approved at once, the approval
    stages otherwise, and the break-glass maximum. Assumes a reason and a ticket are given."""
    return engine.catalog_for(user, policies.clock(), mfa=user.mfa)
