"""Small factories for the report tests: plans, subscriptions, payments and refunds written
straight into the database at fixed dates, each movement of money posted to the ledger through
billing's own ledger service (so the books balance as they do in production)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy.ext.asyncio import AsyncSession

from billing_api.ledger import service as ledger
from billing_api.models import (
    Payment,
    PaymentStatus,
    Plan,
    Refund,
    RefundStatus,
    Subscription,
    SubscriptionStatus,
)
from shared import clock

PROVIDER = "sandbox"


def at(month: int, day: int, hour: int = 12, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


async def plan(
    session: AsyncSession,
    code: str,
    price: int,
    currency: str = "RUB",
    *,
    period_days: int | None = None,
) -> Plan:
    row = Plan(
        code=code,
        name=f"Plan {code}",
        price_amount=price,
        currency=currency,
        period_unit="day" if period_days else "month",
        period_days=period_days,
    )
    session.add(row)
    await session.flush()
    return row


async def subscription(
    session: AsyncSession, on: Plan, status: str = "active", **fields: Any
) -> Subscription:
    row = Subscription(
        user_id=fields.pop("user_id", uuid4()), plan_id=on.id, status=SubscriptionStatus(status)
    )
    for name, value in fields.items():
        setattr(row, name, value)
    session.add(row)
    await session.flush()
    return row


async def payment(
    session: AsyncSession,
    *,
    amount: int,
    paid_at: datetime | None,
    purpose: str = "subscription",
    currency: str = "RUB",
    of: Subscription | None = None,
    method: str = "card",
    status: str | None = None,
    months: int = 1,
    plan_id: UUID | None = None,
    user_id: UUID | None = None,
    description: str = "Cinema subscription",
    created_at: datetime | None = None,
) -> Payment:
    """A payment made (``paid_at``) or not (``None``, failed); a paid one's money is posted:
    card to revenue (a top-up to the wallet), wallet from the wallet to revenue."""
    created = created_at or (paid_at or at(11, 1)) - timedelta(minutes=1)
    row = Payment(
        user_id=user_id or (of.user_id if of else uuid4()),
        purpose=purpose,
        subscription_id=of.id if of else None,
        plan_id=plan_id or (of.plan_id if of else None),
        method=method,
        status=PaymentStatus(status or ("succeeded" if paid_at else "failed")),
        amount=amount,
        currency=currency,
        base_amount=amount,
        months=months,
        description=description,
        provider=PROVIDER if method == "card" else None,
        paid_at=paid_at,
        created_at=created,
        updated_at=paid_at or created,
    )
    session.add(row)
    await session.flush()
    if of is not None and paid_at is not None:
        of.latest_payment_id = row.id
    if paid_at is None or amount == 0:
        return row
    with clock.frozen(paid_at):
        if method == "wallet":
            await ledger.spend_from_wallet(
                session,
                user_id=row.user_id,
                amount=amount,
                currency=currency,
                reference=str(row.id),
                description=description,
            )
            return row
        to = ledger.wallet_account(row.user_id) if purpose == "top_up" else ledger.REVENUE
        await ledger.post(
            session,
            kind="payment_captured",
            reference=str(row.id),
            user_id=row.user_id,
            description=description,
            currency=currency,
            lines=ledger.transfer(ledger.clearing_account(PROVIDER), to, amount),
        )
    return row


async def refund(session: AsyncSession, of: Payment, amount: int, completed_at: datetime) -> Refund:
    """A refund of ``amount`` of a card payment, completed and posted at ``completed_at``."""
    row = Refund(
        payment_id=of.id,
        user_id=of.user_id,
        amount=amount,
        currency=of.currency,
        status=RefundStatus.SUCCEEDED,
        rule="test",
        completed_at=completed_at,
        created_at=completed_at - timedelta(minutes=5),
        updated_at=completed_at,
    )
    session.add(row)
    of.refunded_amount += amount
    fully = of.refunded_amount == of.amount
    of.status = PaymentStatus.REFUNDED if fully else PaymentStatus.PARTIALLY_REFUNDED
    await session.flush()
    with clock.frozen(completed_at):
        await ledger.post(
            session,
            kind="refund",
            reference=str(row.id),
            user_id=of.user_id,
            description=f"Refund: {of.description}",
            currency=of.currency,
            lines=ledger.transfer(ledger.REFUNDS, ledger.clearing_account(PROVIDER), amount),
        )
    return row


NOW = at(11, 30, 18)
"""When the seeded month's report is read: its last day, in the evening."""


async def seed_month(session: AsyncSession) -> None:
    """November 2026 in two currencies; the test computes every figure from this by hand.

    RUB plans: ``rep-month`` 299.00 a month, ``rep-week`` 70.00 a 7-day period, ``rep-premium``
    499.00 a month. EUR plan ``rep-eur`` 9.99 a month.
    """
    month = await plan(session, "rep-month", 29900)
    week = await plan(session, "rep-week", 7000, period_days=7)
    premium = await plan(session, "rep-premium", 49900)
    eur = await plan(session, "rep-eur", 999, "EUR")

    # S1 new: subscribed on Nov 3.
    s1 = await subscription(session, month)
    await payment(session, of=s1, amount=29900, paid_at=at(11, 3, 10))
    # S2 renewed: subscribed Oct 5, renewed Nov 5 for 3 months at 10% off (807.30).
    s2 = await subscription(session, month)
    await payment(session, of=s2, amount=29900, paid_at=at(10, 5))
    await payment(session, of=s2, purpose="renewal", amount=80730, months=3, paid_at=at(11, 5, 9))
    # S3 refunded: subscribed Nov 10, refunded in full Nov 11, canceled then.
    s3 = await subscription(session, month, "canceled", canceled_at=at(11, 11, 8))
    p3 = await payment(session, of=s3, amount=29900, paid_at=at(11, 10))
    await refund(session, p3, 29900, at(11, 11, 8))
    # S4 churned out of grace: subscribed Sep 20, renewal declined Nov 7, grace ran out Nov 10.
    s4 = await subscription(
        session,
        month,
        "expired",
        current_period_end=at(11, 8),
        grace_until=at(11, 10, 6),
        dunning_started_at=at(11, 7),
    )
    await payment(session, of=s4, amount=29900, paid_at=at(9, 20))
    await payment(
        session, of=s4, purpose="renewal", amount=29900, paid_at=None, created_at=at(11, 7)
    )
    # S5 trial converted: trial from Oct 28 to Nov 4, first charge (its renewal) Nov 4.
    s5 = await subscription(session, month, trial=True, trial_end=at(11, 4))
    await payment(session, of=s5, purpose="trial", amount=0, paid_at=at(10, 28))
    await payment(session, of=s5, purpose="renewal", amount=29900, paid_at=at(11, 4, 0, 30))
    # S6 trial not converted: trial Nov 15 to Nov 22, auto-renew off, expired at its end.
    s6 = await subscription(
        session,
        month,
        "expired",
        trial=True,
        trial_end=at(11, 22),
        current_period_end=at(11, 22),
        auto_renew=False,
    )
    await payment(session, of=s6, purpose="trial", amount=0, paid_at=at(11, 15))
    # S7 in its trial now: Nov 28 to Dec 5.
    s7 = await subscription(session, month, trial=True, trial_end=at(12, 5))
    await payment(session, of=s7, purpose="trial", amount=0, paid_at=at(11, 28))
    # S8 in grace now: weekly, subscribed Nov 10, renewed Nov 17, declined Nov 24.
    s8 = await subscription(
        session, week, "grace", grace_until=at(12, 2), dunning_started_at=at(11, 24)
    )
    await payment(session, of=s8, amount=7000, paid_at=at(11, 10, 15))
    await payment(session, of=s8, purpose="renewal", amount=7000, paid_at=at(11, 17, 15))
    await payment(
        session, of=s8, purpose="renewal", amount=7000, paid_at=None, created_at=at(11, 24)
    )
    # S9 paused: subscribed Aug 1.
    s9 = await subscription(session, month, "paused")
    await payment(session, of=s9, amount=29900, paid_at=at(8, 1))
    # S10 canceled now on Nov 20 with 100.00 of its October payment refunded.
    s10 = await subscription(session, month, "canceled", canceled_at=at(11, 20))
    p10 = await payment(session, of=s10, amount=29900, paid_at=at(10, 15))
    await refund(session, p10, 10000, at(11, 20))
    # S11 upgraded to premium on Nov 12 (200.00 after the credit for its unused month).
    s11 = await subscription(session, premium)
    await payment(session, of=s11, amount=29900, paid_at=at(10, 1), plan_id=month.id)
    await payment(session, of=s11, purpose="upgrade", amount=20000, paid_at=at(11, 12))
    # A wallet: topped up 500.00 on Nov 2, 150.00 of it spent on a movie on Nov 6.
    buyer = uuid4()
    await payment(session, purpose="top_up", amount=50000, paid_at=at(11, 2), user_id=buyer)
    await payment(
        session,
        purpose="purchase",
        method="wallet",
        amount=15000,
        paid_at=at(11, 6),
        user_id=buyer,
        description='Movie "Heat", 1995',
    )

    # EUR: E1 subscribed Nov 7; E2 subscribed Oct 20, renewed Nov 20; a 20.00 top-up.
    e1 = await subscription(session, eur)
    await payment(session, of=e1, amount=999, currency="EUR", paid_at=at(11, 7))
    e2 = await subscription(session, eur)
    await payment(session, of=e2, amount=999, currency="EUR", paid_at=at(10, 20))
    await payment(session, of=e2, purpose="renewal", amount=999, currency="EUR", paid_at=at(11, 20))
    await payment(session, purpose="top_up", amount=2000, currency="EUR", paid_at=at(11, 9))
