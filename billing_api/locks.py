"""Row locks in billing's one order: what was bought, then its payments, then their refunds.

Every path that changes a payment and what it paid for takes the locks in this order (after
them come the wallet's advisory lock and, last, the entitlement snapshot), so two such paths
wait for each other instead of deadlocking. A path that starts from a payment reads it without
a lock to learn what it paid for, locks that, and only then locks the payment and re-reads it:
another transaction may have changed it in between.

A re-read overwrites the row's attributes in the session (``populate_existing``), and billing's
sessions do not flush on their own: a change made to the row in this transaction and not yet
written would silently vanish. :func:`relock` writes that row's pending change first.

A row is locked and re-read once per transaction: the session remembers the rows it locked
(``session.info``, forgotten when the transaction ends), and locking one of them again returns
the object the session already holds, which is the row as read under the lock plus this
transaction's own changes (no other transaction can have changed it since). A path that settles
several payments at once locks their rows with :func:`lock_all`, in one statement per table,
and everything it then calls finds them locked without another round trip.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

from billing_api.models import Gift, Payment, Purchase, Subscription
from billing_api.models.base import Base

Row = TypeVar("Row", bound=Base)
Locked = TypeVar("Locked", Subscription, Payment, Purchase)

# ``session.info`` key: the identity keys of the rows this transaction locked and read.
_HELD = "locks.held"


@event.listens_for(Session, "after_transaction_end")
def _forget_locks(session: Session, transaction: SessionTransaction) -> None:
    # The transaction's end forgets them all, and so does a savepoint's (its rollback may
    # release locks taken within it): a row is then locked and read again, as it first was.
    # (A flush runs in a subtransaction of its own, which changes nothing.)
    if transaction.parent is None or transaction.nested:
        session.info.pop(_HELD, None)


def _held(session: AsyncSession) -> set[Any]:
    held: set[Any] = session.info.setdefault(_HELD, set())
    return held


def _locked_here(session: AsyncSession, model: type[Row], key: UUID) -> Row | None:
    """The session's object of a row this transaction has locked and read, if it still holds
    it whole (an object expired since would have to be read again)."""
    identity = session.identity_key(model, key)
    if identity not in session.info.get(_HELD, ()):
        return None
    row = session.identity_map.get(identity)
    if row is None or sa.inspect(row).expired_attributes:
        return None
    assert isinstance(row, model)
    return row


async def relock(session: AsyncSession, model: type[Row], key: UUID) -> Row | None:
    """The ``model`` row ``key``, locked (``FOR UPDATE``) and re-read from the database;
    not locked and read again if this transaction has done so already.

    If the session already holds that row with a change not yet written, the session's
    changes are written first (the row's UPDATE takes the same lock at the same point of the
    order; everything else it changed, it changed under locks it already holds), so the
    re-read keeps them instead of overwriting them with the committed values.
    """
    held = session.identity_map.get(session.identity_key(model, key))
    if held is not None and session.is_modified(held):
        # Also when the row is locked already: what follows may read this transaction's
        # changes back with a query (the renewals a refund cuts off, by their status).
        await session.flush()
    locked = _locked_here(session, model, key)
    if locked is not None:
        return locked
    row = await session.get(model, key, with_for_update=True, populate_existing=True)
    if row is not None:
        _held(session).add(session.identity_key(model, key))
    return row


async def lock_all(
    session: AsyncSession, model: type[Locked], where: sa.ColumnElement[bool]
) -> Sequence[Locked]:
    """The ``model`` rows matching ``where``, locked in id order (billing's order within a
    table) and re-read by one statement; later locks of them in this transaction cost nothing.
    Pending changes are written first, as :func:`relock` does."""
    if any(isinstance(row, model) and session.is_modified(row) for row in session.dirty):
        await session.flush()
    rows = (
        await session.scalars(
            sa.select(model)
            .where(where)
            .order_by(model.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).all()
    _held(session).update(session.identity_key(model, row.id) for row in rows)
    return rows


async def lock_subscription(session: AsyncSession, subscription_id: UUID) -> Subscription | None:
    """The subscription row, locked and re-read."""
    return await relock(session, Subscription, subscription_id)


async def lock_paid_for(session: AsyncSession, payment: Payment) -> None:
    """Lock the subscription or purchase ``payment`` paid for (the first lock of the order).
    A gift is what a gift payment bought: it is locked first, then the subscription it was
    redeemed into (redeeming takes them in that order too)."""
    if payment.gift_id is not None:
        gift = await lock_gift(session, payment.gift_id)
        if gift is not None and gift.subscription_id is not None:
            await lock_subscription(session, gift.subscription_id)
    if payment.subscription_id is not None:
        await lock_subscription(session, payment.subscription_id)
    if payment.purchase_id is not None:
        await lock_purchase(session, payment.purchase_id)


async def lock_purchase(session: AsyncSession, purchase_id: UUID) -> Purchase | None:
    """The purchase row, locked and re-read."""
    return await relock(session, Purchase, purchase_id)


async def lock_gift(session: AsyncSession, gift_id: UUID) -> Gift | None:
    """The gift row, locked and re-read."""
    return await relock(session, Gift, gift_id)


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
    if payment.gift_id is not None and not await _skip_locked(
        session, sa.select(Gift.id).where(Gift.id == payment.gift_id)
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
