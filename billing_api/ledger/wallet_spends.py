"""Wallet spends of payments that are not completed at once: renewals paid from the wallet.

A checkout paid from the wallet spends and completes in one transaction. A renewal paid from the
wallet spends when it is claimed and is completed by the same run right after (see
:mod:`billing_api.lifecycle.wallet_renewals`), so between the two commits a payment may be
pending with its money already taken. Whatever ends such a payment without completing it (an
upgrade voiding the renewal, say) gives the money back here, so a wallet never pays for a
period it did not get.

Both movements are ledger transactions keyed by the payment id (``wallet_spend`` as at
checkout, ``wallet_spend_released`` for the way back), so neither is ever posted twice.
"""

from __future__ import annotations

from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from billing_api.ledger import service as ledger
from billing_api.models import LedgerTransaction, Payment

SPEND = "wallet_spend"
RELEASE = "wallet_spend_released"


async def _posted(session: AsyncSession, kind: str, payment_id: UUID) -> bool:
    await ledger.write_collected(session)  # postings still collected count too
    found = await session.scalar(
        sa.select(LedgerTransaction.id).where(
            LedgerTransaction.kind == kind, LedgerTransaction.reference == str(payment_id)
        )
    )
    return found is not None


async def spent(session: AsyncSession, payment_id: UUID) -> bool:
    """Whether the payment's money has been taken from the wallet (and not given back)."""
    return await _posted(session, SPEND, payment_id) and not await _posted(
        session, RELEASE, payment_id
    )


async def take(
    session: AsyncSession,
    *,
    payment_id: UUID,
    user_id: UUID,
    amount: int,
    currency: str,
    description: str,
) -> bool:
    """Spend ``amount`` for the payment if the balance covers it; whether it did (or had).

    The caller holds the wallet's lock (:func:`billing_api.ledger.service.lock_wallet`), taken
    in billing's lock order, so the balance read here is the one spent from: a checkout paying
    from the same wallet at the same moment waits, and then sees this spend.
    """
    if await spent(session, payment_id):
        return True
    available = await ledger.balance(session, ledger.wallet_account(user_id), currency)
    if available < amount:
        return False
    await ledger.post(
        session,
        kind=SPEND,
        reference=str(payment_id),
        user_id=user_id,
        description=description,
        currency=currency,
        lines=ledger.transfer(ledger.wallet_account(user_id), ledger.REVENUE, amount),
    )
    return True


async def give_back(session: AsyncSession, payment: Payment) -> bool:
    """A wallet payment that ends without being completed returns what it took; whether it
    gave anything back now (a payment that took nothing, or gave it back already, does not)."""
    if payment.method != "wallet" or payment.amount == 0:
        return False
    if not await spent(session, payment.id):
        return False
    return await ledger.post(
        session,
        kind=RELEASE,
        reference=str(payment.id),
        user_id=payment.user_id,
        description=f"{payment.description}: not charged",
        currency=payment.currency,
        lines=ledger.transfer(
            ledger.REVENUE, ledger.wallet_account(payment.user_id), payment.amount
        ),
    )
