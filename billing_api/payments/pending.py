"""One checkout at a time for what is being bought: its pending payment is made once and reused.

A subscription or purchase checkout inserts the pending row of what is bought (``status =
'pending'``), and the database's one-pending index (per user and plan; per user, movie and
kind) lets one such row exist at a time. Concurrent checkouts of the same thing meet there: one
inserts, the others wait for it to commit and then find it, locked, and answer with its payment
(the same checkout) instead of charging again. A pending row whose last payment failed or
expired gets a new payment. A top-up has no row of its own: a top-up of the same amount whose
checkout the gateway never opened is handed out again instead.

The pending row can stop being pending between the insert that met it and the read that locks
it (paid, abandoned; or, for a trial, the one-trial index met a trial that started meanwhile):
the checkout is then tried again from the checks, a bounded number of times, and answers 409
``CheckoutContended`` if the row keeps changing under it.

A card payment is only created here: the route opens its checkout at the gateway once it is
committed (:mod:`billing_api.payments.checkout`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from billing_api.customers import Customer
from billing_api.models import (
    Payment,
    PaymentStatus,
    Purchase,
    PurchaseStatus,
    Subscription,
    SubscriptionStatus,
)
from billing_api.payments import service as payments
from billing_api.payments.schemas import PaymentMethod
from shared.errors import AppError

ATTEMPTS = 3
"""How many times a checkout meets a pending row that is gone before it is refused."""

Bought = TypeVar("Bought", Subscription, Purchase)
# What is bought is pending, in its own table's words, while its checkout is open.
BOUGHT_PENDING = (SubscriptionStatus.PENDING, PurchaseStatus.PENDING)


class CheckoutContended(AppError):
    """Nothing was written and the same request will very likely succeed at once: a 503 with
    ``Retry-After``, which also releases the ``Idempotency-Key`` (a 409 would be replayed to
    the retry for the key's lifetime)."""

    status_code = 503
    default_detail = (
        "another checkout of the same thing kept changing while this one started; try again"
    )


async def start_or_reuse(
    session: AsyncSession,
    customer: Customer,
    model: type[Bought],
    *,
    insert: sa.Insert,
    pending: sa.Select[Bought],
    order: Callable[[Bought], Awaitable[payments.Order]],
    method: PaymentMethod,
    check: Callable[[], Awaitable[None]] | None = None,
) -> tuple[Bought, bool]:
    """The pending ``model`` row of this checkout and whether a payment was started now.

    ``insert`` adds the pending row unless it meets a unique index (``ON CONFLICT DO NOTHING
    RETURNING id``); ``pending`` selects the pending row it met. ``check`` runs before each
    attempt (rules a row inserted meanwhile can break: one trial per user and plan). ``order``
    prices what is paid, only when a new payment is made: a retry of a checkout whose payment
    still waits must not be refused for the promo code that payment holds.
    """
    bought = await _pending_row(session, model, insert=insert, pending=pending, check=check)
    if bought is None:
        raise CheckoutContended()
    row, new = bought
    if not new:
        latest = await session.get(Payment, row.latest_payment_id)
        if latest is not None and latest.status == PaymentStatus.PENDING:
            return row, False
        # The last attempt failed or expired: the same row gets a new payment.
    payment = await payments.start_payment(session, customer, await order(row), method=method)
    if row.status in BOUGHT_PENDING:  # unless a wallet or free payment completed it already
        row.latest_payment_id = payment.id
    await session.flush()
    return row, True


async def _pending_row(
    session: AsyncSession,
    model: type[Bought],
    *,
    insert: sa.Insert,
    pending: sa.Select[Bought],
    check: Callable[[], Awaitable[None]] | None,
) -> tuple[Bought, bool] | None:
    """``(row, inserted now)``: the row this checkout inserted, or the pending one it met,
    locked; None when every attempt met a row that was no longer pending."""
    for _ in range(ATTEMPTS):
        if check is not None:
            await check()
        inserted: UUID | None = await session.scalar(insert)
        if inserted is not None:
            row = await session.get(model, inserted)
            assert row is not None
            return row, True
        found = await session.scalar(pending.with_for_update())
        if found is not None:
            return found, False
        # It stopped being pending in between: try again as a new checkout.
    return None


async def start_or_reuse_unopened(
    session: AsyncSession, customer: Customer, order: payments.Order
) -> Payment:
    """A card payment for ``order``, or the oldest one of this user for the same purpose,
    amount and currency still waiting for its checkout to be opened (its first request got
    503): retrying never leaves two of them to pay."""
    unopened = await session.scalar(
        sa.select(Payment)
        .where(
            Payment.user_id == customer.id,
            Payment.purpose == order.purpose,
            Payment.method == "card",
            Payment.status == PaymentStatus.PENDING,
            Payment.checkout_url.is_(None),
            Payment.amount == order.amount,
            Payment.currency == order.currency,
        )
        .order_by(Payment.created_at)
        .limit(1)
    )
    if unopened is not None:
        return unopened
    return await payments.start_payment(session, customer, order, method="card")
