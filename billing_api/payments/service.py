"""Taking money: a card checkout through the gateway, the wallet, or nothing for a free order.

Every payment row is created with a fresh id that the gateway uses as its idempotency key, so
retrying a request never creates a second provider charge for the same payment. A card
payment is only created here; the route opens its checkout at the gateway once the payment is
committed (:mod:`billing_api.payments.checkout`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from billing_api.activation import service as activation
from billing_api.customers import Customer
from billing_api.ledger import service as ledger_service
from billing_api.models import Payment, PaymentPurpose, PaymentStatus, PromoCode, PromoRedemption
from billing_api.payments.schemas import PaymentBrief, PaymentMethod, PaymentOut
from billing_api.pricing.service import PromoCodeAlreadyUsed, PromoCodeExhausted, Quote
from shared.errors import NotFound
from shared.money import Money
from shared.pagination import newest_first, page_of

# Zero-amount checkouts that only save a card (the gateway opens them as setup checkouts).
SAVES_CARD_ONLY = (PaymentPurpose.TRIAL, PaymentPurpose.CARD_UPDATE)


class PaymentNotFound(NotFound):
    default_detail = "no such payment"


@dataclass(frozen=True)
class Order:
    """What is being paid for, priced already."""

    purpose: str
    description: str
    amount: int
    base_amount: int
    currency: str
    discount_amount: int = 0
    quote: dict[str, Any] | None = None
    promo_code_id: UUID | None = None
    months: int = 1
    subscription_id: UUID | None = None
    purchase_id: UUID | None = None
    plan_id: UUID | None = None
    save_payment_method: bool = False
    gift_id: UUID | None = None

    @classmethod
    def priced(cls, quote: Quote, *, purpose: str, description: str, **links: Any) -> Order:
        """The order that charges ``quote``: its total, the base and discount it shows and the
        quote itself kept with the payment; ``links`` are the other fields (what it pays for,
        months, promo code, whether the card is saved)."""
        return cls(
            purpose=purpose,
            description=description,
            amount=quote.total,
            base_amount=quote.base_amount,
            currency=quote.currency,
            discount_amount=quote.discount_amount,
            quote=quote.to_json(),
            **links,
        )


async def start_payment(
    session: AsyncSession, customer: Customer, order: Order, *, method: PaymentMethod
) -> Payment:
    """Create the payment and take the money (wallet, free), or leave a card payment pending
    for the route to open its checkout after the commit (no gateway call holds our locks)."""
    payment = Payment(
        id=uuid4(),
        user_id=customer.id,
        email=customer.email,
        purpose=order.purpose,
        subscription_id=order.subscription_id,
        purchase_id=order.purchase_id,
        gift_id=order.gift_id,
        plan_id=order.plan_id,
        # A zero total needs no money, except a trial's or a card update's: their checkout
        # saves the card.
        method="free" if order.amount == 0 and order.purpose not in SAVES_CARD_ONLY else method,
        status=PaymentStatus.PENDING,
        amount=order.amount,
        currency=order.currency,
        base_amount=order.base_amount,
        discount_amount=order.discount_amount,
        quote=order.quote or {},
        promo_code_id=order.promo_code_id,
        months=order.months,
        description=order.description,
        refunded_amount=0,
        save_payment_method=order.save_payment_method,
    )
    session.add(payment)
    await session.flush()
    if order.promo_code_id is not None:
        await reserve_promo(session, order.promo_code_id, customer.id, payment.id)
    if payment.method == "card":
        return payment
    if payment.method == "wallet":
        await ledger_service.spend_from_wallet(
            session,
            user_id=customer.id,
            amount=payment.amount,
            currency=payment.currency,
            reference=str(payment.id),
            description=payment.description,
        )
    await activation.complete_payment(session, payment, provider=None, payment_method_ref=None)
    return payment


async def reserve_promo(
    session: AsyncSession, promo_code_id: UUID, user_id: UUID, payment_id: UUID
) -> None:
    """Hold one redemption for this payment: bounded by ``max_redemptions``, once per user."""
    taken = await session.scalar(
        sa.update(PromoCode)
        .where(
            PromoCode.id == promo_code_id,
            sa.or_(
                PromoCode.max_redemptions.is_(None),
                PromoCode.redemptions < PromoCode.max_redemptions,
            ),
        )
        .values(redemptions=PromoCode.redemptions + 1)
        .returning(PromoCode.id)
    )
    if taken is None:
        raise PromoCodeExhausted("this promo code has been used up")
    try:
        async with session.begin_nested():
            session.add(
                PromoRedemption(promo_code_id=promo_code_id, user_id=user_id, payment_id=payment_id)
            )
    except IntegrityError:
        raise PromoCodeAlreadyUsed("you have already used this promo code") from None


def brief(payment: Payment | None) -> PaymentBrief | None:
    if payment is None:
        return None
    return PaymentBrief(
        id=payment.id,
        status=payment.status,
        amount=Money(amount=payment.amount, currency=payment.currency),
        checkout_url=payment.checkout_url if payment.status == PaymentStatus.PENDING else None,
        action_url=_action_url(payment),
    )


def _action_url(payment: Payment) -> str | None:
    return payment.action_url if payment.status == PaymentStatus.REQUIRES_ACTION else None


async def by_id(
    session: AsyncSession, payment_ids: Iterable[UUID | None]
) -> Mapping[UUID | None, Payment]:
    """The payments of ``payment_ids`` in one query, by id: a page of subscriptions or purchases
    finds each row's latest payment here instead of asking for them one by one. ``None`` (a
    row without a payment) finds nothing."""
    wanted = {payment_id for payment_id in payment_ids if payment_id is not None}
    if not wanted:
        return {}
    found = await session.scalars(sa.select(Payment).where(Payment.id.in_(wanted)))
    return {payment.id: payment for payment in found}


def payment_out(payment: Payment) -> PaymentOut:
    def money(amount: int) -> Money:
        return Money(amount=amount, currency=payment.currency)

    return PaymentOut(
        id=payment.id,
        status=payment.status,
        amount=money(payment.amount),
        checkout_url=payment.checkout_url if payment.status == PaymentStatus.PENDING else None,
        action_url=_action_url(payment),
        purpose=payment.purpose,
        method=payment.method,
        description=payment.description,
        base_amount=money(payment.base_amount),
        discount=money(payment.discount_amount),
        subscription_id=payment.subscription_id,
        purchase_id=payment.purchase_id,
        refunded=money(payment.refunded_amount),
        created_at=payment.created_at,
        paid_at=payment.paid_at,
        expires_at=payment.expires_at,
        failure_message=payment.failure_message,
        provider=payment.provider or None,
    )


async def list_payments(
    session: AsyncSession,
    user_id: UUID,
    *,
    since: datetime | None,
    until: datetime | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[PaymentOut], str | None]:
    query = sa.select(Payment).where(Payment.user_id == user_id)
    if since is not None:
        query = query.where(Payment.created_at >= since)
    if until is not None:
        query = query.where(Payment.created_at < until)
    rows = (
        await session.scalars(newest_first(query, Payment.created_at, Payment.id, cursor, limit))
    ).all()
    items, next_cursor = page_of(rows, limit)
    return [payment_out(p) for p in items], next_cursor


async def get_payment(session: AsyncSession, user_id: UUID, payment_id: UUID) -> PaymentOut:
    payment = await session.get(Payment, payment_id)
    if payment is None or payment.user_id != user_id:
        raise PaymentNotFound(f"payment {payment_id} not found")
    return payment_out(payment)
