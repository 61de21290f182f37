"""Every figure of the summary report, from the payments, refunds, ledger and subscription
tables, in one currency. A few grouped queries, none per row.

Money (minor units of ``currency``):

* **captured** — payments paid in the period (``paid_at``), whatever became of them later
  (refunded, disputed: those show as refunds or not at all, never by shrinking ``captured``).
  Every purpose counts (subscription, renewal, upgrade, purchase, and any purpose added later:
  gifts, households) except ``top_up``: a top-up is money we hold for the user (the ledger
  credits their wallet), and it becomes revenue when the wallet pays for something — that
  wallet payment is counted then. Payments of nothing (trials, card updates) count for nothing.
* **refunded** — refunds completed in the period (``completed_at``) of those same payments (a
  top-up's refund leaves the wallet, not revenue). **net** = captured - refunded.
* What the ledger moves without a payment or a refund is not in these figures: an upgrade's
  credit larger than its price (``plan_change_credit``, revenue to the wallet), a refunded
  upgrade's credit given back (``plan_credit_released``) and disputes (``dispute``: a disputed
  payment stays captured; the money held back shows in the ``disputes`` account). The ledger
  export has every one of them.
* **wallets owed** — the sum of the wallets' positive balances (``user_wallet:*`` ledger
  accounts, credits - debits) over the ledger's transactions before the period's end; a wallet
  that owes us (a disputed top-up already spent) counts for nothing, not against.

Subscriptions (their plan's currency; a subscription is one subscriber of one plan):

* **started** — when its first period began: the ``paid_at`` of its first paid ``subscription``
  or ``trial`` payment (a checkout never paid never started). **ended** — canceled:
  ``canceled_at``; expired: ``grace_until`` when it ran out of grace, else
  ``current_period_end``.
* **new** — started in the period. **churned** — ended in the period.
* **subscribers by day** — started and not ended at the end of each day.
* **by status** (read now: the tables hold the current state only) — ``active`` paid for,
  ``trial`` (active, ``trial_end`` still ahead), ``grace``, ``paused``; **by plan** — the same
  live subscriptions by their current plan.
* **MRR** (now) — over the subscriptions that pay: active outside a trial, and in grace (paused
  ones pay nothing until they resume, trials nothing yet). Each adds its recurring price per
  month: the amount of the charge that bought its current period, divided by the periods it
  bought (so after the months-tier, personal or promo discount that charge got), when that
  charge was a ``subscription`` or ``renewal`` payment; otherwise (an upgrade's prorated
  charge) the plan's list price. A day-based plan's period price is scaled to 30 days.
* **trials** — ended: trial subscriptions whose ``trial_end`` is in the period; converted: of
  those, the ones with a paid ``renewal`` (the first charge of a trial is its renewal).
* **renewals** — succeeded: ``renewal`` payments paid in the period; failed: subscriptions that
  expired out of grace in the period (every retry declined, nothing paid); rate =
  succeeded / (succeeded + failed).
* **in dunning** (now) — in grace, or active or paused with a declined renewal being retried.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import QueryableAttribute

from billing_api.models import LedgerEntry, LedgerTransaction, Payment, Plan, Refund, Subscription
from billing_api.reports import live, schemas
from billing_api.reports.period import Period

NOT_REVENUE = ("top_up",)
STARTS = ("subscription", "trial")

_When = sa.ColumnElement[Any] | QueryableAttribute[Any]


def _utc_day(column: _When) -> sa.ColumnElement[date]:
    return sa.cast(sa.func.timezone("UTC", column), sa.Date)


def _within(column: _When, period: Period) -> sa.ColumnElement[bool]:
    return sa.and_(column >= period.start, column < period.end)


async def revenue_by_day(
    session: AsyncSession, period: Period, currency: str
) -> tuple[schemas.Revenue, list[schemas.RevenueDay]]:
    """Captured and refunded, the period's totals and each day's (every day, zeros included)."""
    paid_day = _utc_day(Payment.paid_at).label("day")
    captured = (
        sa.select(paid_day, sa.func.sum(Payment.amount), sa.func.count())
        .where(
            _within(Payment.paid_at, period),
            Payment.currency == currency,
            Payment.amount > 0,
            Payment.purpose.not_in(NOT_REVENUE),
        )
        .group_by(paid_day)
    )
    refund_day = _utc_day(Refund.completed_at).label("day")
    refunded = (
        sa.select(refund_day, sa.func.sum(Refund.amount), sa.func.count())
        .join(Payment, Payment.id == Refund.payment_id)
        .where(
            _within(Refund.completed_at, period),
            Refund.status == "succeeded",
            Refund.currency == currency,
            Payment.purpose.not_in(NOT_REVENUE),
        )
        .group_by(refund_day)
    )
    paid = {day: (int(total), count) for day, total, count in await session.execute(captured)}
    back = {day: (int(total), count) for day, total, count in await session.execute(refunded)}
    days = []
    for day in period.days:
        cap, ref = paid.get(day, (0, 0))[0], back.get(day, (0, 0))[0]
        days.append(schemas.RevenueDay(day=day, captured=cap, refunded=ref, net=cap - ref))
    total_captured = sum(amount for amount, _ in paid.values())
    total_refunded = sum(amount for amount, _ in back.values())
    totals = schemas.Revenue(
        captured=total_captured,
        refunded=total_refunded,
        net=total_captured - total_refunded,
        payments=sum(count for _, count in paid.values()),
        refunds=sum(count for _, count in back.values()),
    )
    return totals, days


async def wallets_owed(session: AsyncSession, period: Period, currency: str) -> schemas.Wallets:
    """The wallets' positive balances at the period's end."""
    signed = sa.case((LedgerEntry.side == "credit", LedgerEntry.amount), else_=-LedgerEntry.amount)
    balances = (
        sa.select(sa.func.sum(signed).label("balance"))
        .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        .where(
            LedgerEntry.account.startswith("user_wallet:", autoescape=True),
            LedgerEntry.currency == currency,
            LedgerTransaction.created_at < period.end,
        )
        .group_by(LedgerEntry.account)
        .subquery()
    )
    owed, wallets = (
        await session.execute(
            sa.select(sa.func.coalesce(sa.func.sum(balances.c.balance), 0), sa.func.count()).where(
                balances.c.balance > 0
            )
        )
    ).one()
    return schemas.Wallets(owed=int(owed), wallets=wallets)


def _in_currency(currency: str) -> sa.ColumnElement[bool]:
    return Subscription.plan_id.in_(sa.select(Plan.id).where(Plan.currency == currency))


def _spans(currency: str) -> sa.Subquery:
    """Each started subscription of the currency with when it started and ended (or NULL)."""
    first_paid = (
        sa.select(
            Payment.subscription_id.label("subscription_id"),
            sa.func.min(Payment.paid_at).label("started"),
        )
        .where(Payment.purpose.in_(STARTS), Payment.paid_at.is_not(None))
        .group_by(Payment.subscription_id)
        .subquery()
    )
    ended = sa.case(
        (Subscription.status == "canceled", Subscription.canceled_at),
        (
            Subscription.status == "expired",
            sa.func.coalesce(Subscription.grace_until, Subscription.current_period_end),
        ),
    )
    return (
        sa.select(first_paid.c.started, ended.label("ended"))
        .join(first_paid, first_paid.c.subscription_id == Subscription.id)
        .where(_in_currency(currency))
        .subquery()
    )


async def subscriber_flow(
    session: AsyncSession, period: Period, currency: str
) -> tuple[int, int, list[schemas.SubscribersDay]]:
    """New and churned in the period, and the subscribers at the end of each of its days."""
    spans = _spans(currency)
    base = await session.scalar(
        sa.select(sa.func.count()).where(
            spans.c.started < period.start,
            sa.or_(spans.c.ended.is_(None), spans.c.ended >= period.start),
        )
    )
    start_day, end_day = _utc_day(spans.c.started), _utc_day(spans.c.ended)
    starts = (
        sa.select(sa.literal("start"), start_day, sa.func.count())
        .where(_within(spans.c.started, period))
        .group_by(start_day)
    )
    ends = (
        sa.select(sa.literal("end"), end_day, sa.func.count())
        .where(_within(spans.c.ended, period))
        .group_by(end_day)
    )
    moves: Counter[tuple[str, date]] = Counter()
    for kind, day, count in await session.execute(sa.union_all(starts, ends)):
        moves[(kind, day)] += count
    live, days = int(base or 0), []
    for day in period.days:
        live += moves[("start", day)] - moves[("end", day)]
        days.append(schemas.SubscribersDay(day=day, subscribers=live))
    new = sum(count for (kind, _), count in moves.items() if kind == "start")
    churned = sum(count for (kind, _), count in moves.items() if kind == "end")
    return new, churned, days


async def trial_conversion(session: AsyncSession, period: Period, currency: str) -> schemas.Trials:
    """Trials that ended in the period, and how many of them were paid for after."""
    renewed = (
        sa.exists()
        .where(
            Payment.subscription_id == Subscription.id,
            Payment.purpose == "renewal",
            Payment.paid_at.is_not(None),
        )
        .correlate(Subscription)
    )
    ended, converted = (
        await session.execute(
            sa.select(sa.func.count(), sa.func.count().filter(renewed)).where(
                Subscription.trial,
                _within(Subscription.trial_end, period),
                _in_currency(currency),
            )
        )
    ).one()
    return schemas.Trials(ended=ended, converted=converted, conversion_rate=_rate(converted, ended))


async def renewal_outcomes(
    session: AsyncSession, period: Period, currency: str
) -> schemas.Renewals:
    """Renewals paid in the period against subscriptions lost to dunning in it."""
    succeeded = await session.scalar(
        sa.select(sa.func.count()).where(
            Payment.purpose == "renewal",
            _within(Payment.paid_at, period),
            Payment.currency == currency,
        )
    )
    failed = await session.scalar(
        sa.select(sa.func.count()).where(
            Subscription.status == "expired",
            _within(Subscription.grace_until, period),
            _in_currency(currency),
        )
    )
    won, lost = int(succeeded or 0), int(failed or 0)
    return schemas.Renewals(succeeded=won, failed=lost, success_rate=_rate(won, won + lost))


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


async def summary(
    session: AsyncSession, period: Period, currency: str, *, now: datetime
) -> schemas.ReportSummary:
    """Every figure of the dashboard for the period, in ``currency``."""
    revenue, revenue_days = await revenue_by_day(session, period, currency)
    counts, by_plan, in_dunning = await live.status_counts(session, currency, now)
    new, churned, subscriber_days = await subscriber_flow(session, period, currency)
    return schemas.ReportSummary(
        currency=currency,
        first_day=period.first_day,
        last_day=period.last_day,
        as_of=now,
        revenue=revenue,
        revenue_by_day=revenue_days,
        mrr=await live.monthly_recurring_revenue(session, currency, now),
        subscribers=counts,
        subscribers_by_plan=by_plan,
        subscribers_by_day=subscriber_days,
        new_subscribers=new,
        churned_subscribers=churned,
        trials=await trial_conversion(session, period, currency),
        renewals=await renewal_outcomes(session, period, currency),
        in_dunning=in_dunning,
        wallets=await wallets_owed(session, period, currency),
    )
