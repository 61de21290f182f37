"""Admin routes for discounts: months tiers, personal discounts and promo codes (role ``admin``;
every change is audited)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Response, status

from billing_api.admin.access import CatalogEditor, StaffReader
from billing_api.admin.audit import service as audit
from billing_api.admin.discounts import service
from billing_api.admin.discounts.schemas import (
    MonthTierChangesIn,
    MonthTierIn,
    MonthTierOut,
    PersonalDiscountIn,
    PersonalDiscountOut,
    PromoCodeChangesIn,
    PromoCodeIn,
    PromoCodeOut,
)
from shared.db import SessionDep
from shared.pagination import Page

router = APIRouter(prefix="/api/v1/admin", tags=["admin: discounts"])

ActiveFilter = Annotated[bool | None, Query(description="Only active (or only archived) ones.")]


# --- months tiers ----------------------------------------------------------------------------


@router.get("/month-tiers", response_model=Page[MonthTierOut])
async def list_month_tiers(
    session: SessionDep, principal: StaffReader, plan_id: UUID | None = None
) -> Page[MonthTierOut]:
    """Months-count tiers: global ones and per plan (a plan's own tiers replace the global)."""
    return Page(items=await service.list_tiers(session, plan_id=plan_id))


@router.post("/month-tiers", response_model=MonthTierOut, status_code=status.HTTP_201_CREATED)
async def create_month_tier(
    body: MonthTierIn, session: SessionDep, principal: CatalogEditor
) -> MonthTierOut:
    """Add a months tier: percent off from min_months on, for one plan or globally."""
    return await service.create_tier(session, audit.actor_of(principal), body)


@router.patch("/month-tiers/{tier_id}", response_model=MonthTierOut)
async def update_month_tier(
    tier_id: UUID, body: MonthTierChangesIn, session: SessionDep, principal: CatalogEditor
) -> MonthTierOut:
    """Change a tier's percent."""
    return await service.update_tier(session, audit.actor_of(principal), tier_id, body)


@router.delete("/month-tiers/{tier_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_month_tier(
    tier_id: UUID, session: SessionDep, principal: CatalogEditor
) -> Response:
    """Remove a tier (the audit trail keeps what it was)."""
    await service.delete_tier(session, audit.actor_of(principal), tier_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- personal discounts ----------------------------------------------------------------------


@router.get("/personal-discounts", response_model=Page[PersonalDiscountOut])
async def list_personal_discounts(
    session: SessionDep, principal: StaffReader
) -> Page[PersonalDiscountOut]:
    """Every personal discount."""
    return Page(items=await service.list_personal(session))


@router.put("/personal-discounts/{user_id}", response_model=PersonalDiscountOut)
async def set_personal_discount(
    user_id: UUID, body: PersonalDiscountIn, session: SessionDep, principal: CatalogEditor
) -> PersonalDiscountOut:
    """Set a user's personal discount (percent, with the reason)."""
    return await service.set_personal(session, audit.actor_of(principal), user_id, body)


@router.delete("/personal-discounts/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_personal_discount(
    user_id: UUID, session: SessionDep, principal: CatalogEditor
) -> Response:
    """Remove a user's personal discount."""
    await service.delete_personal(session, audit.actor_of(principal), user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- promo codes -----------------------------------------------------------------------------


@router.get("/promo-codes", response_model=Page[PromoCodeOut])
async def list_promo_codes(
    session: SessionDep, principal: StaffReader, active: ActiveFilter = None
) -> Page[PromoCodeOut]:
    """Promo codes with their redemption counts, newest first."""
    return Page(items=await service.list_promos(session, active=active))


@router.post("/promo-codes", response_model=PromoCodeOut, status_code=status.HTTP_201_CREATED)
async def create_promo_code(
    body: PromoCodeIn, session: SessionDep, principal: CatalogEditor
) -> PromoCodeOut:
    """Create a promo code (stored upper-case; percent or a fixed amount)."""
    return await service.create_promo(session, audit.actor_of(principal), body)


@router.get("/promo-codes/{promo_id}", response_model=PromoCodeOut)
async def get_promo_code(
    promo_id: UUID, session: SessionDep, principal: StaffReader
) -> PromoCodeOut:
    """One promo code with its redemption counts."""
    return await service.get_promo(session, promo_id)


@router.patch("/promo-codes/{promo_id}", response_model=PromoCodeOut)
async def update_promo_code(
    promo_id: UUID, body: PromoCodeChangesIn, session: SessionDep, principal: CatalogEditor
) -> PromoCodeOut:
    """Change a promo code's end or redemption limit."""
    return await service.update_promo(session, audit.actor_of(principal), promo_id, body)


@router.post("/promo-codes/{promo_id}/deactivate", response_model=PromoCodeOut)
async def deactivate_promo_code(
    promo_id: UUID, session: SessionDep, principal: CatalogEditor
) -> PromoCodeOut:
    """Switch a promo code off: new checkouts cannot use it."""
    actor = audit.actor_of(principal)
    return await service.update_promo(session, actor, promo_id, PromoCodeChangesIn(), active=False)


@router.post("/promo-codes/{promo_id}/activate", response_model=PromoCodeOut)
async def activate_promo_code(
    promo_id: UUID, session: SessionDep, principal: CatalogEditor
) -> PromoCodeOut:
    """Switch a promo code back on."""
    actor = audit.actor_of(principal)
    return await service.update_promo(session, actor, promo_id, PromoCodeChangesIn(), active=True)
