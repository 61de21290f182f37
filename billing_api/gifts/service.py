"""Buying gifts and reading them back: the same checkout and payment path as any order.

A gift is priced like a subscription of its plan for its months (months tiers, personal
discount, promo code: :func:`billing_api.pricing.inputs.price_plan`), paid by card checkout or
from the wallet; its payment (purpose ``gift``) is completed in
:mod:`billing_api.activation.service`, which gives the gift its code. Each request buys its own
gift (one may give the same plan to several people); a retried request is answered from its
``Idempotency-Key``.

One exception, so that a retry never leaves two gifts to pay: a card gift whose checkout the
gateway never opened (its request got ``503 GatewayUnavailable``, which releases the key, or its
answer was lost) is handed back to the next request of the buyer for the same gift -- plan,
months, recipient, message, delivery time, language and promo code -- and its checkout is opened
then, like a subscription's or a top-up's (:mod:`billing_api.payments.checkout`). A gift whose
checkout is open is never handed back: the buyer may be giving a second one. (So a retry that
comes after reconciliation opened the first one's checkout, 15 minutes on, buys a second gift;
the first stays in ``GET /gifts`` until its checkout expires, and if both are paid each is a
gift, refundable like any.)
"""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID, uuid4

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from billing_api import locks
from billing_api.catalog import service as catalog
from billing_api.config import BillingSettings
from billing_api.customers import Customer
from billing_api.gifts.schemas import GiftIn, GiftOut
from billing_api.models import Gift, GiftStatus, Payment, PaymentPurpose, PaymentStatus, PromoCode
from billing_api.payments import service as payments
from billing_api.payments.checkout import unopened
from billing_api.pricing.inputs import price_plan
from shared import clock
from shared.errors import NotFound, UnprocessableEntity
from shared.pagination import newest_first, page_of


class GiftNotFound(NotFound):
    default_detail = "no such gift"


class DeliveryInThePast(UnprocessableEntity):
    default_detail = "deliver_at is in the past; leave it out to deliver at once"


class DeliveryAfterExpiry(UnprocessableEntity):
    default_detail = "deliver_at is after the gift would expire"


def gift_out(gift: Gift, latest: Payment | None) -> GiftOut:
    return GiftOut(
        id=gift.id,
        plan_id=gift.plan_id,
        months=gift.months,
        status=gift.status,
        recipient_email=gift.recipient_email,
        message=gift.message,
        deliver_at=gift.deliver_at,
        delivered_at=gift.delivered_at,
        code=gift.code,
        expires_at=gift.expires_at,
        redeemed_at=gift.redeemed_at,
        latest_payment=payments.brief(latest),
        created_at=gift.created_at,
    )


async def buy(
    session: AsyncSession, settings: BillingSettings, customer: Customer, request: GiftIn
) -> Gift:
    """Create the gift and its payment: a wallet payment completes it at once, a card payment
    is left for the route to open at the gateway after the commit (or hand back the same gift
    whose card checkout was never opened)."""
    plan = await catalog.load_plan(session, request.plan_id)
    now = clock.now()
    if request.deliver_at is not None and request.deliver_at < now:
        raise DeliveryInThePast()
    if request.deliver_at is not None and request.deliver_at >= now + timedelta(
        days=settings.gift_validity_days
    ):
        raise DeliveryAfterExpiry(
            f"deliver_at must be within {settings.gift_validity_days} days: the code expires then"
        )
    if request.payment_method == "card":
        unopened = await _unopened_same_gift(session, customer, request)
        if unopened is not None:
            return unopened
    priced = await price_plan(
        session,
        plan,
        request.months,
        user_id=customer.id,
        promo_code=request.promo_code,
        max_total_percent=settings.max_total_discount_percent,
    )
    gift = Gift(
        id=uuid4(),
        buyer_id=customer.id,
        buyer_email=customer.email,
        locale=request.locale,
        plan_id=plan.id,
        months=request.months,
        recipient_email=request.recipient_email.strip(),
        message=request.message,
        deliver_at=request.deliver_at,
        validity_days=settings.gift_validity_days,
        status=GiftStatus.PENDING,
    )
    session.add(gift)
    await session.flush()
    payment = await payments.start_payment(
        session,
        customer,
        payments.Order.priced(
            priced.quote,
            purpose=PaymentPurpose.GIFT,
            description=f"Gift: {plan.name}, {request.months} mo. for {gift.recipient_email}",
            promo_code_id=priced.promo_code_id,
            months=request.months,
            plan_id=plan.id,
            gift_id=gift.id,
        ),
        method=request.payment_method,
    )
    gift.latest_payment_id = payment.id
    await session.flush()
    return gift


async def _unopened_same_gift(
    session: AsyncSession, customer: Customer, request: GiftIn
) -> Gift | None:
    """The buyer's oldest pending gift like ``request`` whose card checkout was never opened,
    locked (it is re-checked under the lock: it may have been opened or paid meanwhile)."""
    promo = (
        Payment.promo_code_id.is_(None)
        if request.promo_code is None
        else Payment.promo_code_id.in_(
            sa.select(PromoCode.id).where(PromoCode.code == request.promo_code.strip().upper())
        )
    )
    candidates = await session.scalars(
        sa.select(Gift.id)
        .join(Payment, Payment.id == Gift.latest_payment_id)
        .where(
            Gift.buyer_id == customer.id,
            Gift.status == GiftStatus.PENDING,
            Gift.plan_id == request.plan_id,
            Gift.months == request.months,
            Gift.recipient_email == request.recipient_email.strip(),
            Gift.message.is_not_distinct_from(request.message),
            Gift.deliver_at.is_not_distinct_from(request.deliver_at),
            Gift.locale == request.locale,
            Payment.method == "card",
            Payment.status == PaymentStatus.PENDING,
            Payment.checkout_url.is_(None),
            promo,
        )
        .order_by(Gift.created_at)
    )
    for gift_id in candidates:
        gift = await locks.lock_gift(session, gift_id)
        latest = await session.get(Payment, gift.latest_payment_id) if gift else None
        if gift is not None and gift.status == GiftStatus.PENDING and latest and unopened(latest):
            return gift
    return None


async def get_own(session: AsyncSession, user_id: UUID, gift_id: UUID) -> GiftOut:
    gift = await session.get(Gift, gift_id)
    if gift is None or gift.buyer_id != user_id:
        raise GiftNotFound(f"gift {gift_id} not found")
    return await out(session, gift)


async def out(session: AsyncSession, gift: Gift) -> GiftOut:
    latest = await session.get(Payment, gift.latest_payment_id) if gift.latest_payment_id else None
    return gift_out(gift, latest)


async def list_gifts(
    session: AsyncSession, user_id: UUID, *, cursor: str | None, limit: int
) -> tuple[list[GiftOut], str | None]:
    """The gifts the user bought, newest first."""
    query = sa.select(Gift).where(Gift.buyer_id == user_id)
    rows = (
        await session.scalars(newest_first(query, Gift.created_at, Gift.id, cursor, limit))
    ).all()
    items, next_cursor = page_of(rows, limit)
    latest = await payments.by_id(session, [g.latest_payment_id for g in items])
    return [gift_out(g, latest.get(g.latest_payment_id)) for g in items], next_cursor
