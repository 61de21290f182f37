"""``GET /api/v1/quote``: what a plan would cost, with every discount considered."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query

from billing_api.catalog import service as catalog
from billing_api.deps import SettingsDep
from billing_api.pricing.inputs import price_plan
from billing_api.pricing.schemas import QuoteOut
from billing_api.pricing.service import quote_out
from shared.auth import OptionalPrincipal
from shared.db import SessionDep

router = APIRouter(prefix="/api/v1", tags=["pricing"])


@router.get("/quote", response_model=QuoteOut)
async def get_quote(
    plan_id: UUID,
    session: SessionDep,
    settings: SettingsDep,
    principal: OptionalPrincipal,
    months: Annotated[int, Query(ge=1, le=12)] = 1,
    promo_code: Annotated[str | None, Query(max_length=64)] = None,
) -> QuoteOut:
    """Price quote; a signed-in user also gets their personal discount."""
    plan = await catalog.load_plan(session, plan_id)
    priced = await price_plan(
        session,
        plan,
        months,
        user_id=principal.user_id if principal else None,
        promo_code=promo_code,
        max_total_percent=settings.max_total_discount_percent,
    )
    return quote_out(plan.id, priced.quote)
