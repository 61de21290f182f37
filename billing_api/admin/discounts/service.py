"""Back-office edits of discounts: months-count tiers, personal discounts and promo codes.

Promo codes are never deleted (payments point at them); they are deactivated. Their
redemption counts come from the redemption rows: reserved at checkout, redeemed when paid,
released when the payment failed or expired.
"""

from __future__ import annotations

from uuid import UUID, uuid4

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing_api.admin.audit import service as audit
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
from billing_api.catalog import service as catalog
from billing_api.models import (
    MonthTier,
    PersonalDiscount,
    Plan,
    PromoCode,
    PromoRedemption,
    PromoRedemptionStatus,
)
from shared.errors import Conflict, NotFound, UnprocessableEntity
from shared.money import Money


class MonthTierNotFound(NotFound):
    default_detail = "no such months tier"


class MonthTierExists(Conflict):
    default_detail = "a tier for this plan and months count exists already"


class PersonalDiscountNotFound(NotFound):
    default_detail = "this user has no personal discount"


class PromoCodeNotFound(NotFound):
    default_detail = "no such promo code"


class PromoCodeTaken(Conflict):
    default_detail = "a promo code with this code exists already"


class PromoCodeCurrencyMismatch(UnprocessableEntity):
    default_detail = "a fixed promo code for a plan must be in the plan's currency"


class PromoCodeBelowRedemptions(Conflict):
    default_detail = "max_redemptions cannot go below the redemptions already made"


# --- months tiers ----------------------------------------------------------------------------


def tier_out(tier: MonthTier) -> MonthTierOut:
    return MonthTierOut(
        id=tier.id, plan_id=tier.plan_id, min_months=tier.min_months, percent=tier.percent
    )


async def list_tiers(session: AsyncSession, *, plan_id: UUID | None) -> list[MonthTierOut]:
    query = sa.select(MonthTier).order_by(
        MonthTier.plan_id.is_not(None), MonthTier.plan_id, MonthTier.min_months
    )
    if plan_id is not None:
        query = query.where(MonthTier.plan_id == plan_id)
    return [tier_out(tier) for tier in await session.scalars(query)]


async def create_tier(session: AsyncSession, actor: str, body: MonthTierIn) -> MonthTierOut:
    if body.plan_id is not None:
        await catalog.load_plan(session, body.plan_id, active_only=False)
    tier_id = await session.scalar(
        insert(MonthTier)
        .values(plan_id=body.plan_id, min_months=body.min_months, percent=body.percent)
        .on_conflict_do_nothing()
        .returning(MonthTier.id)
    )
    if tier_id is None:
        raise MonthTierExists(f"a {body.min_months}+ months tier exists already for this scope")
    tier = await session.get(MonthTier, tier_id)
    assert tier is not None
    await audit.record(
        session, actor, "month_tier.create", "month_tier", tier.id, after=audit.snapshot(tier)
    )
    return tier_out(tier)


async def _tier(session: AsyncSession, tier_id: UUID) -> MonthTier:
    tier = await session.get(MonthTier, tier_id, with_for_update=True)
    if tier is None:
        raise MonthTierNotFound(f"months tier {tier_id} not found")
    return tier


async def update_tier(
    session: AsyncSession, actor: str, tier_id: UUID, body: MonthTierChangesIn
) -> MonthTierOut:
    tier = await _tier(session, tier_id)
    before = audit.snapshot(tier)
    tier.percent = body.percent
    await session.flush()
    await audit.record(
        session,
        actor,
        "month_tier.update",
        "month_tier",
        tier.id,
        before=before,
        after=audit.snapshot(tier),
    )
    return tier_out(tier)


async def delete_tier(session: AsyncSession, actor: str, tier_id: UUID) -> None:
    tier = await _tier(session, tier_id)
    before = audit.snapshot(tier)
    await session.delete(tier)
    await session.flush()
    await audit.record(session, actor, "month_tier.delete", "month_tier", tier_id, before=before)


# --- personal discounts ----------------------------------------------------------------------


def personal_out(row: PersonalDiscount) -> PersonalDiscountOut:
    return PersonalDiscountOut(
        user_id=row.user_id, percent=row.percent, reason=row.reason, updated_at=row.updated_at
    )


async def list_personal(session: AsyncSession) -> list[PersonalDiscountOut]:
    rows = await session.scalars(sa.select(PersonalDiscount).order_by(PersonalDiscount.user_id))
    return [personal_out(row) for row in rows]


async def set_personal(
    session: AsyncSession, actor: str, user_id: UUID, body: PersonalDiscountIn
) -> PersonalDiscountOut:
    """Give a user a personal discount (or change it); it applies to their next quotes."""
    row = await session.get(PersonalDiscount, user_id, with_for_update=True)
    before = None if row is None else audit.snapshot(row)
    if row is None:
        row = PersonalDiscount(user_id=user_id, percent=body.percent, reason=body.reason)
        session.add(row)
    else:
        row.percent, row.reason = body.percent, body.reason
    await session.flush()
    await audit.record(
        session,
        actor,
        "personal_discount.set",
        "personal_discount",
        user_id,
        before=before,
        after=audit.snapshot(row),
        reason=body.reason or None,
    )
    return personal_out(row)


async def delete_personal(session: AsyncSession, actor: str, user_id: UUID) -> None:
    row = await session.get(PersonalDiscount, user_id, with_for_update=True)
    if row is None:
        raise PersonalDiscountNotFound(f"user {user_id} has no personal discount")
    before = audit.snapshot(row)
    await session.delete(row)
    await session.flush()
    await audit.record(
        session, actor, "personal_discount.delete", "personal_discount", user_id, before=before
    )


# --- promo codes -----------------------------------------------------------------------------


RedemptionCounts = dict[PromoRedemptionStatus, int]


async def _redemption_counts(
    session: AsyncSession, promo_ids: list[UUID]
) -> dict[UUID, RedemptionCounts]:
    """Each code's redemptions by status, for all ``promo_ids`` in one query."""
    counts: dict[UUID, RedemptionCounts] = {promo_id: {} for promo_id in promo_ids}
    if not promo_ids:
        return counts
    rows = await session.execute(
        sa.select(PromoRedemption.promo_code_id, PromoRedemption.status, sa.func.count())
        .where(PromoRedemption.promo_code_id.in_(promo_ids))
        .group_by(PromoRedemption.promo_code_id, PromoRedemption.status)
    )
    for promo_id, status, count in rows:
        counts[promo_id][status] = int(count)
    return counts


async def promo_out(session: AsyncSession, promo: PromoCode) -> PromoCodeOut:
    counts = await _redemption_counts(session, [promo.id])
    return _promo_out(promo, counts[promo.id])


def _promo_out(promo: PromoCode, counts: RedemptionCounts) -> PromoCodeOut:
    amount = None
    if promo.amount is not None and promo.currency is not None:
        amount = Money(amount=promo.amount, currency=promo.currency)
    return PromoCodeOut(
        id=promo.id,
        code=promo.code,
        kind=promo.kind,
        percent=promo.percent,
        amount=amount,
        plan_id=promo.plan_id,
        valid_from=promo.valid_from,
        valid_until=promo.valid_until,
        max_redemptions=promo.max_redemptions,
        active=promo.active,
        redemptions=promo.redemptions,
        redeemed=counts.get(PromoRedemptionStatus.REDEEMED, 0),
        reserved=counts.get(PromoRedemptionStatus.RESERVED, 0),
        released=counts.get(PromoRedemptionStatus.RELEASED, 0),
        created_at=promo.created_at,
    )


async def list_promos(session: AsyncSession, *, active: bool | None) -> list[PromoCodeOut]:
    query = sa.select(PromoCode).order_by(PromoCode.created_at.desc(), PromoCode.code)
    if active is not None:
        query = query.where(PromoCode.active.is_(active))
    promos = list(await session.scalars(query))
    counts = await _redemption_counts(session, [promo.id for promo in promos])
    return [_promo_out(promo, counts[promo.id]) for promo in promos]


async def create_promo(session: AsyncSession, actor: str, body: PromoCodeIn) -> PromoCodeOut:
    code = body.code.upper()  # codes are matched upper-case
    if body.plan_id is not None:
        plan: Plan = await catalog.load_plan(session, body.plan_id, active_only=False)
        if body.amount is not None and body.amount.currency != plan.currency:
            raise PromoCodeCurrencyMismatch(
                f"the plan is in {plan.currency}, the amount in {body.amount.currency}"
            )
    promo_id = await session.scalar(
        insert(PromoCode)
        .values(
            id=uuid4(),
            code=code,
            kind=body.kind,
            percent=body.percent,
            amount=None if body.amount is None else body.amount.amount,
            currency=None if body.amount is None else body.amount.currency,
            plan_id=body.plan_id,
            valid_from=body.valid_from,
            valid_until=body.valid_until,
            max_redemptions=body.max_redemptions,
            redemptions=0,
            active=True,
        )
        .on_conflict_do_nothing(index_elements=[PromoCode.code])
        .returning(PromoCode.id)
    )
    if promo_id is None:
        raise PromoCodeTaken(f"promo code {code} exists already")
    promo = await session.get(PromoCode, promo_id)
    assert promo is not None
    await audit.record(
        session, actor, "promo_code.create", "promo_code", promo.id, after=audit.snapshot(promo)
    )
    return await promo_out(session, promo)


async def _promo(session: AsyncSession, promo_id: UUID) -> PromoCode:
    promo = await session.get(PromoCode, promo_id, with_for_update=True, populate_existing=True)
    if promo is None:
        raise PromoCodeNotFound(f"promo code {promo_id} not found")
    return promo


async def get_promo(session: AsyncSession, promo_id: UUID) -> PromoCodeOut:
    promo = await session.get(PromoCode, promo_id)
    if promo is None:
        raise PromoCodeNotFound(f"promo code {promo_id} not found")
    return await promo_out(session, promo)


async def update_promo(
    session: AsyncSession,
    actor: str,
    promo_id: UUID,
    body: PromoCodeChangesIn,
    *,
    active: bool | None = None,
) -> PromoCodeOut:
    """Change a promo code's end, its redemption limit or whether it is on.

    Deactivating stops new checkouts from using it; payments that reserved it already keep it.
    """
    promo = await _promo(session, promo_id)
    before = audit.snapshot(promo)
    changes = body.model_dump(exclude_unset=True)
    limit = changes.get("max_redemptions")
    if limit is not None and limit < promo.redemptions:
        raise PromoCodeBelowRedemptions(
            f"{promo.redemptions} redemptions are counted already; the limit cannot be {limit}"
        )
    for key, value in changes.items():
        setattr(promo, key, value)
    if active is not None:
        promo.active = active
    await session.flush()
    after = audit.snapshot(promo)
    if after != before:
        action = "promo_code.update"
        if promo.active != before["active"]:
            action = "promo_code.activate" if promo.active else "promo_code.deactivate"
        await audit.record(
            session, actor, action, "promo_code", promo.id, before=before, after=after
        )
    return await promo_out(session, promo)
