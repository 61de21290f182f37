"""The job that closes card checkouts past their expiry whose expiry event never came."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing_api import locks
from billing_api.activation import service as activation
from billing_api.models import Payment, PaymentStatus

# A card checkout in one of these states is closed once it expires.
ABANDONABLE = (PaymentStatus.PENDING, PaymentStatus.FAILED)


async def abandon_expired_checkouts(
    sessions: async_sessionmaker[AsyncSession], now: datetime, *, limit: int = 500
) -> int:
    """Checkouts past their expiry whose expiry event never came (or that failed) are closed.

    Each in its own transaction and in billing's lock order: the due payments are read without
    a lock, then each one's subscription or purchase is locked, then the payment, re-read and
    checked again (it may have been paid meanwhile). A checkout whose rows another transaction
    holds (its payment being settled, another worker's pass) is skipped, never waited for: the
    next pass closes it if it is still due.
    """
    async with sessions() as session:
        due = list(
            await session.scalars(
                sa.select(Payment.id)
                .where(
                    Payment.status.in_(ABANDONABLE),
                    Payment.method == "card",
                    Payment.expires_at < now,
                )
                .order_by(Payment.expires_at)
                .limit(limit)
            )
        )
    count = 0
    for payment_id in due:
        async with sessions() as session, session.begin():
            payment = await locks.claim_payment(session, payment_id)
            if (
                payment is not None
                and payment.status in ABANDONABLE
                and payment.expires_at is not None
                and payment.expires_at < now
            ):
                count += await activation.expire_payment(session, payment)
    return count
