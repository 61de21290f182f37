"""Admin routes for plans and discounts (role ``admin``; every change is audited)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Response, status

from billing_api.admin import audit, discounts
from billing_api.admin import catalog as admin_catalog
from billing_api.admin.schemas import (
    AdminPlanOut,
    MonthTierChangesIn,
    MonthTierIn,
    MonthTierOut,
    PersonalDiscountIn,
    PersonalDiscountOut,
    PlanChangesIn,
    PlanIn,
    PromoCodeChangesIn,
    PromoCodeIn,
    PromoCodeOut,
)
from shared.auth import AdminPrincipal
from shared.db import SessionDep
from shared.pagination import Page

plans = APIRouter(prefix="/api/v1/admin/plans", tags=["admin: plans"])
discounts_router = APIRouter(prefix="/api/v1/admin", tags=["admin: discounts"])

ActiveFilter = Annotated[bool | None, Query(description="Only active (or only archived) ones.")]


# --- plans -----------------------------------------------------------------------------------


@plans.get("", response_model=Page[AdminPlanOut])
async def list_admin_plans(
    session: SessionDep, principal: AdminPrincipal, active: ActiveFilter = None
) -> Page[AdminPlanOut]:
    """Every plan, archived ones included, with its movies and live subscriptions."""
    return Page(items=await admin_catalog.list_plans(session, active=active))


@plans.post("", response_model=AdminPlanOut, status_code=status.HTTP_201_CREATED)
async def create_plan(body: PlanIn, session: SessionDep, principal: AdminPrincipal) -> AdminPlanOut:
    """Create a plan (emits plan.changed)."""
    return await admin_catalog.create_plan(session, audit.actor_of(principal), body)


@plans.get("/{plan_id}", response_model=AdminPlanOut)
async def get_admin_plan(
    plan_id: UUID, session: SessionDep, principal: AdminPrincipal
) -> AdminPlanOut:
    """One plan, archived or not."""
    return await admin_catalog.get_plan(session, plan_id)


@plans.patch("/{plan_id}", response_model=AdminPlanOut)
async def update_plan(
    plan_id: UUID, body: PlanChangesIn, session: SessionDep, principal: AdminPrincipal
) -> AdminPlanOut:
    """Change a plan's fields or movies (emits plan.changed when something changed)."""
    return await admin_catalog.update_plan(session, audit.actor_of(principal), plan_id, body)


@plans.post("/{plan_id}/archive", response_model=AdminPlanOut)
async def archive_plan(
    plan_id: UUID, session: SessionDep, principal: AdminPrincipal
) -> AdminPlanOut:
    """Stop selling a plan; its subscribers keep access until their subscriptions end."""
    actor = audit.actor_of(principal)
    return await admin_catalog.set_plan_active(session, actor, plan_id, active=False)


@plans.post("/{plan_id}/restore", response_model=AdminPlanOut)
async def restore_plan(
    plan_id: UUID, session: SessionDep, principal: AdminPrincipal
) -> AdminPlanOut:
    """Put an archived plan on sale again."""
    actor = audit.actor_of(principal)
    return await admin_catalog.set_plan_active(session, actor, plan_id, active=True)


# --- months tiers ----------------------------------------------------------------------------


@discounts_router.get("/month-tiers", response_model=Page[MonthTierOut])
async def list_month_tiers(
    session: SessionDep, principal: AdminPrincipal, plan_id: UUID | None = None
) -> Page[MonthTierOut]:
    """Months-count tiers: global ones and per plan (a plan's own tiers replace the global)."""
    return Page(items=await discounts.list_tiers(session, plan_id=plan_id))


@discounts_router.post(
    "/month-tiers", response_model=MonthTierOut, status_code=status.HTTP_201_CREATED
)
async def create_month_tier(
    body: MonthTierIn, session: SessionDep, principal: AdminPrincipal
) -> MonthTierOut:
    """Add a months tier: percent off from min_months on, for one plan or globally."""
    return await discounts.create_tier(session, audit.actor_of(principal), body)


@discounts_router.patch("/month-tiers/{tier_id}", response_model=MonthTierOut)
async def update_month_tier(
    tier_id: UUID, body: MonthTierChangesIn, session: SessionDep, principal: AdminPrincipal
) -> MonthTierOut:
    """Change a tier's percent."""
    return await discounts.update_tier(session, audit.actor_of(principal), tier_id, body)


@discounts_router.delete("/month-tiers/{tier_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_month_tier(
    tier_id: UUID, session: SessionDep, principal: AdminPrincipal
) -> Response:
    """Remove a tier (the audit trail keeps what it was)."""
    await discounts.delete_tier(session, audit.actor_of(principal), tier_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- personal discounts ----------------------------------------------------------------------


@discounts_router.get("/personal-discounts", response_model=Page[PersonalDiscountOut])
async def list_personal_discounts(
    session: SessionDep, principal: AdminPrincipal
) -> Page[PersonalDiscountOut]:
    """Every personal discount."""
    return Page(items=await discounts.list_personal(session))


@discounts_router.put("/personal-discounts/{user_id}", response_model=PersonalDiscountOut)
async def set_personal_discount(
    user_id: UUID, body: PersonalDiscountIn, session: SessionDep, principal: AdminPrincipal
) -> PersonalDiscountOut:
    """Set a user's personal discount (percent, with the reason)."""
    return await discounts.set_personal(session, audit.actor_of(principal), user_id, body)


@discounts_router.delete("/personal-discounts/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_personal_discount(
    user_id: UUID, session: SessionDep, principal: AdminPrincipal
) -> Response:
    """Remove a user's personal discount."""
    await discounts.delete_personal(session, audit.actor_of(principal), user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- promo codes -----------------------------------------------------------------------------


@discounts_router.get("/promo-codes", response_model=Page[PromoCodeOut])
async def list_promo_codes(
    session: SessionDep, principal: AdminPrincipal, active: ActiveFilter = None
) -> Page[PromoCodeOut]:
    """Promo codes with their redemption counts, newest first."""
    return Page(items=await discounts.list_promos(session, active=active))


@discounts_router.post(
    "/promo-codes", response_model=PromoCodeOut, status_code=status.HTTP_201_CREATED
)
async def create_promo_code(
    body: PromoCodeIn, session: SessionDep, principal: AdminPrincipal
) -> PromoCodeOut:
    """Create a promo code (stored upper-case; percent or a fixed amount)."""
    return await discounts.create_promo(session, audit.actor_of(principal), body)


@discounts_router.get("/promo-codes/{promo_id}", response_model=PromoCodeOut)
async def get_promo_code(
    promo_id: UUID, session: SessionDep, principal: AdminPrincipal
) -> PromoCodeOut:
    """One promo code with its redemption counts."""
    return await discounts.get_promo(session, promo_id)


@discounts_router.patch("/promo-codes/{promo_id}", response_model=PromoCodeOut)
async def update_promo_code(
    promo_id: UUID, body: PromoCodeChangesIn, session: SessionDep, principal: AdminPrincipal
) -> PromoCodeOut:
    """Change a promo code's end or redemption limit."""
    return await discounts.update_promo(session, audit.actor_of(principal), promo_id, body)


@discounts_router.post("/promo-codes/{promo_id}/deactivate", response_model=PromoCodeOut)
async def deactivate_promo_code(
    promo_id: UUID, session: SessionDep, principal: AdminPrincipal
) -> PromoCodeOut:
    """Switch a promo code off: new checkouts cannot use it."""
    actor = audit.actor_of(principal)
    return await discounts.update_promo(
        session, actor, promo_id, PromoCodeChangesIn(), active=False
    )


@discounts_router.post("/promo-codes/{promo_id}/activate", response_model=PromoCodeOut)
async def activate_promo_code(
    promo_id: UUID, session: SessionDep, principal: AdminPrincipal
) -> PromoCodeOut:
    """Switch a promo code back on."""
    actor = audit.actor_of(principal)
    return await discounts.update_promo(session, actor, promo_id, PromoCodeChangesIn(), active=True)
