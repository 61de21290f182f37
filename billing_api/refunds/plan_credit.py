"""The plan-change credit of an upgrade, as refunds see it.

Refunding an upgrade payment gives its plan-change credit back too: the same share of the
credit as of the payment goes to the wallet (``credit_applied * refunded // amount``, rounded
down). The payment the credit came from stays non-refundable: its unused part is that credit.
Money of that payment refunded at the provider since (or disputed) has given the credit back
already, so the wallet gets at most the credit less that money.
"""

from __future__ import annotations

from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from billing_api.ledger import service as ledger
from billing_api.models import (
    LedgerEntry,
    LedgerTransaction,
    Payment,
    PaymentPurpose,
    PaymentStatus,
    Refund,
    Subscription,
)


async def credited_to_upgrade(session: AsyncSession, payment: Payment) -> bool:
    """Whether the unused part of ``payment`` was credited to a later upgrade, paid or still
    waiting for payment (the credit is held until that checkout is paid or expires), so the
    same money is never both refunded and credited."""
    if payment.subscription_id is None or payment.paid_at is None:
        return False
    found = await session.scalar(
        sa.select(Payment.id)
        .where(
            Payment.subscription_id == payment.subscription_id,
            Payment.purpose == PaymentPurpose.UPGRADE,
            Payment.status.in_(
                (
                    PaymentStatus.PENDING,
                    PaymentStatus.SUCCEEDED,
                    PaymentStatus.PARTIALLY_REFUNDED,
                    PaymentStatus.REFUNDED,
                    PaymentStatus.DISPUTED,
                )
            ),
            Payment.created_at >= payment.paid_at,
            Payment.id != payment.id,
        )
        .limit(1)
    )
    return found is not None


async def release(session: AsyncSession, payment: Payment, refund: Refund) -> None:
    """Refunding (part of) an upgrade payment gives the same share of its plan-change credit
    back, into the wallet: the credited payment's unused part is not lost with the upgrade.

    Only for an upgrade that took effect (the period it paid for is the subscription's): one
    paid after its subscription ended never moved the credited period's days, which ran out as
    they were."""
    credit = upgrade_credit(payment)
    if credit <= 0 or payment.amount <= 0 or payment.subscription_id is None:
        return
    subscription = await session.get(Subscription, payment.subscription_id)
    if subscription is None or subscription.latest_payment_id != payment.id:
        return
    source = payment.quote.get("credit_payment_id")
    credited = await session.get(Payment, UUID(source), populate_existing=True) if source else None
    if credited is not None and credited.status == PaymentStatus.DISPUTED:
        return  # that money is going back through the dispute already
    released = credit * refund.amount // payment.amount
    if credited is not None:
        # What of the credited payment went back another way since (refunded at the provider:
        # billing refuses to refund it once credited) was that credit already.
        unreturned = credit - credited.refunded_amount - await _credit_released(session, payment)
        released = min(released, unreturned)
    if released <= 0:
        return
    await ledger.post(
        session,
        kind="plan_credit_released",
        reference=str(refund.id),
        user_id=payment.user_id,
        description=f"Refund: plan-change credit of {payment.description}",
        currency=payment.currency,
        lines=ledger.transfer(ledger.REFUNDS, ledger.wallet_account(payment.user_id), released),
    )


async def _credit_released(session: AsyncSession, upgrade: Payment) -> int:
    """How much of ``upgrade``'s credit its earlier refunds gave back to the wallet."""
    await ledger.write_collected(session)  # postings still collected count too
    released = await session.scalar(
        sa.select(sa.func.coalesce(sa.func.sum(LedgerEntry.amount), 0))
        .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        .where(
            LedgerTransaction.kind == "plan_credit_released",
            LedgerTransaction.reference.in_(
                sa.select(sa.cast(Refund.id, sa.String)).where(Refund.payment_id == upgrade.id)
            ),
            LedgerEntry.side == "credit",
        )
    )
    return int(released or 0)


def upgrade_credit(payment: Payment) -> int:
    """The plan-change credit an upgrade payment used (0 for any other payment)."""
    if payment.purpose != PaymentPurpose.UPGRADE:
        return 0
    return int(payment.quote.get("credit_applied", 0))
