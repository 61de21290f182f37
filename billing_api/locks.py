"""Row locks in billing's one order: what was bought, then its payments, then their refunds.

Every path that changes a payment and what it paid for takes the locks in this order (after
them come the wallet's advisory lock and, last, the entitlement snapshot), so two such paths
wait for each other instead of deadlocking. A path that starts from a payment reads it without
a lock to learn what it paid for, locks that, and only then locks the payment and re-reads it:
another transaction may have changed it in between.

A re-read overwrites the row's attributes in the session (``populate_existing``), and billing's
sessions do not flush on their own: a change made to the row in this transaction and not yet
written would silently vanish. :func:`relock` writes that row's pending change first.
"""

from __future__ import annotations

from typing import TypeVar
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from billing_api.models import Payment, Purchase, Subscription
from billing_api.models.base import Base

Row = TypeVar("Row", bound=Base)


async def relock(session: AsyncSession, model: type[Row], key: UUID) -> Row | None:
    """The ``model`` row ``key``, locked (``FOR UPDATE``) and re-read from the database.

    If the session already holds that row with a change not yet written, the session's
    changes are written first (the row's UPDATE takes the same lock at the same point of the
    order; everything else it changed, it changed under locks it already holds), so the
    re-read keeps them instead of overwriting them with the committed values.
    """
    held = session.identity_map.get(session.identity_key(model, key))
    if held is not None and session.is_modified(held):
        await session.flush()
    return await session.get(model, key, with_for_update=True, populate_existing=True)


async def lock_subscription(session: AsyncSession, subscription_id: UUID) -> Subscription | None:
    """The subscription row, locked and re-read."""
    return await relock(session, Subscription, subscription_id)


async def lock_paid_for(session: AsyncSession, payment: Payment) -> None:
    """Lock the subscription or purchase ``payment`` paid for (the first lock of the order)."""
    if payment.subscription_id is not None:
        await lock_subscription(session, payment.subscription_id)
    if payment.purchase_id is not None:
        await lock_purchase(session, payment.purchase_id)


async def lock_purchase(session: AsyncSession, purchase_id: UUID) -> Purchase | None:
    """The purchase row, locked and re-read."""
    return await relock(session, Purchase, purchase_id)


async def lock_payment(session: AsyncSession, payment_id: UUID) -> Payment | None:
    """What the payment paid for, then the payment itself, both locked and re-read."""
    payment = await session.get(Payment, payment_id)
    if payment is None:
        return None
    await lock_paid_for(session, payment)
    return await relock(session, Payment, payment_id)


async def claim_payment(session: AsyncSession, payment_id: UUID) -> Payment | None:
    """:func:`lock_payment` for a job that claims its work with ``SKIP LOCKED``: what the
    payment paid for, then the payment, re-read; None if either is held by another transaction
    (a settlement of the payment, another worker's pass): the job leaves that payment to its
    next pass instead of waiting for it."""
    payment = await session.get(Payment, payment_id)
    if payment is None:
        return None
    if payment.subscription_id is not None and not await _skip_locked(
        session, sa.select(Subscription.id).where(Subscription.id == payment.subscription_id)
    ):
        return None
    if payment.purchase_id is not None and not await _skip_locked(
        session, sa.select(Purchase.id).where(Purchase.id == payment.purchase_id)
    ):
        return None
    return await session.scalar(
        sa.select(Payment)
        .where(Payment.id == payment_id)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    )


async def _skip_locked(session: AsyncSession, row: sa.Select[UUID]) -> bool:
    """Lock the row unless another transaction holds it; whether it is locked now."""
    return await session.scalar(row.with_for_update(skip_locked=True)) is not None
