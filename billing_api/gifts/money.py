"""A gift's money in the ledger: deferred when sold, recognised once when it is used up.

A gift's payment lands in ``revenue`` like any order (card capture, wallet spend); completing
it moves the amount on to ``deferred_revenue:gifts`` (``gift_deferred``, keyed by the payment),
because nothing has been delivered yet. It comes back to ``revenue`` exactly once
(``gift_recognised``, keyed by the gift): when the gift is redeemed, expires, is revoked, or is
refunded before redemption (the refund itself then posts to ``refunds`` as every refund does).
Both are balanced transfers and idempotent on their key.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from billing_api.ledger import service as ledger
from billing_api.models import Gift, Payment

DEFERRED = "gift_deferred"
RECOGNISED = "gift_recognised"


async def defer(session: AsyncSession, gift: Gift, payment: Payment) -> None:
    if payment.amount <= 0:
        return
    await ledger.post(
        session,
        kind=DEFERRED,
        reference=str(payment.id),
        user_id=gift.buyer_id,
        description=f"Gift sold, not yet redeemed: {payment.description}",
        currency=payment.currency,
        lines=ledger.transfer(ledger.REVENUE, ledger.GIFTS_DEFERRED, payment.amount),
    )


async def recognise(session: AsyncSession, gift: Gift, *, why: str) -> None:
    """Move the gift's deferred amount to revenue (once; ``why``: redeemed, expired, ...)."""
    if gift.latest_payment_id is None:
        return
    payment = await session.get(Payment, gift.latest_payment_id)
    if payment is None or payment.amount <= 0:
        return
    await ledger.post(
        session,
        kind=RECOGNISED,
        reference=str(gift.id),
        user_id=gift.buyer_id,
        description=f"Gift {why}: {payment.description}",
        currency=payment.currency,
        lines=ledger.transfer(ledger.GIFTS_DEFERRED, ledger.REVENUE, payment.amount),
    )
