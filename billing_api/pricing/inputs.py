"""Load what the pure pricing needs from the database: tiers, personal discount, promo code."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from billing_api.models import (
    MonthTier,
    PersonalDiscount,
    Plan,
    PromoCode,
    PromoRedemption,
    PromoRedemptionStatus,
)
from billing_api.pricing import service as pricing
from shared import clock


@dataclass(frozen=True)
class Priced:
    quote: pricing.Quote
    promo_code_id: UUID | None  # set only when the promo code is what was applied


async def price_plan(
    session: AsyncSession,
    plan: Plan,
    months: int,
    *,
    user_id: UUID | None,
    promo_code: str | None,
    max_total_percent: int,
) -> Priced:
    """Quote ``plan`` for ``months`` for this user (anonymous: no personal discount)."""
    tiers = await load_tiers(session, plan.id)
    personal = None
    if user_id is not None:
        personal = await session.scalar(
            sa.select(PersonalDiscount.percent).where(PersonalDiscount.user_id == user_id)
        )
    promo_row = None
    promo = None
    if promo_code:
        promo_row = await session.scalar(
            sa.select(PromoCode).where(PromoCode.code == promo_code.strip().upper())
        )
        if promo_row is None:
            raise pricing.PromoCodeNotFound(f"unknown promo code {promo_code!r}")
        used = user_id is not None and bool(
            await session.scalar(
                sa.select(sa.func.count())
                .select_from(PromoRedemption)
                .where(
                    PromoRedemption.promo_code_id == promo_row.id,
                    PromoRedemption.user_id == user_id,
                    PromoRedemption.status != PromoRedemptionStatus.RELEASED,
                )
            )
        )
        promo = pricing.Promo(
            code=promo_row.code,
            kind="fixed" if promo_row.kind == "fixed" else "percent",
            percent=promo_row.percent,
            amount=promo_row.amount,
            currency=promo_row.currency,
            plan_id=promo_row.plan_id,
            valid_from=promo_row.valid_from,
            valid_until=promo_row.valid_until,
            max_redemptions=promo_row.max_redemptions,
            redemptions=promo_row.redemptions,
            active=promo_row.active,
            used_by_user=used,
        )
    quote = pricing.quote(
        pricing.PlanPrice(
            plan_id=plan.id,
            price=plan.price_amount,
            currency=plan.currency,
            max_months=plan.max_months,
        ),
        months,
        now=clock.now(),
        tiers=tiers,
        personal_percent=personal,
        promo=promo,
        max_total_percent=max_total_percent,
    )
    applied_promo = quote.applied is not None and quote.applied.source == "promo"
    return Priced(quote, promo_row.id if applied_promo and promo_row else None)


async def load_tiers(session: AsyncSession, plan_id: UUID) -> list[pricing.Tier]:
    """The plan's own tiers when it has any, otherwise the global ones."""
    return (await load_tiers_of(session, [plan_id]))[plan_id]


async def load_tiers_of(
    session: AsyncSession, plan_ids: Collection[UUID]
) -> dict[UUID, list[pricing.Tier]]:
    """:func:`load_tiers` for several plans in one query."""
    rows = (
        await session.execute(
            sa.select(MonthTier.plan_id, MonthTier.min_months, MonthTier.percent).where(
                sa.or_(MonthTier.plan_id.in_(plan_ids), MonthTier.plan_id.is_(None))
            )
        )
    ).all()
    shared = [pricing.Tier(r.min_months, r.percent) for r in rows if r.plan_id is None]
    own: dict[UUID, list[pricing.Tier]] = {}
    for r in rows:
        if r.plan_id is not None:
            own.setdefault(r.plan_id, []).append(pricing.Tier(r.min_months, r.percent))
    return {plan_id: own.get(plan_id) or shared for plan_id in plan_ids}


async def load_personal_discounts(
    session: AsyncSession, user_ids: Collection[UUID]
) -> dict[UUID, int]:
    """The personal discount percent of each of these users that has one, in one query."""
    rows = await session.execute(
        sa.select(PersonalDiscount.user_id, PersonalDiscount.percent).where(
            PersonalDiscount.user_id.in_(user_ids)
        )
    )
    return {row.user_id: row.percent for row in rows}
