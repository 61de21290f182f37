"""The figures read from the subscriptions as they are now: statuses, plans, MRR, dunning.

Definitions are in :mod:`billing_api.reports.service`'s docstring.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from billing_api.models import Payment, Plan, Subscription
from billing_api.reports import schemas

LIVE = ("active", "grace", "paused")
RECURRING = ("subscription", "renewal")
DAYS_PER_MONTH = 30


def _in_trial(now: datetime) -> sa.ColumnElement[bool]:
    return sa.and_(Subscription.trial, Subscription.trial_end > now)


def _status_group(now: datetime) -> sa.ColumnElement[str]:
    return sa.case(
        (sa.and_(Subscription.status == "active", _in_trial(now)), "trial"),
        else_=Subscription.status,
    )


async def status_counts(
    session: AsyncSession, currency: str, now: datetime
) -> tuple[schemas.StatusCounts, list[schemas.PlanCount], int]:
    """Live subscriptions by status and by plan, and how many are in dunning."""
    group = _status_group(now).label("group")
    dunning = sa.or_(Subscription.status == "grace", Subscription.dunning_started_at.is_not(None))
    rows = (
        await session.execute(
            sa.select(
                Plan.id,
                Plan.code,
                Plan.name,
                group,
                sa.func.count(),
                sa.func.count().filter(dunning),
            )
            .join(Plan, Plan.id == Subscription.plan_id)
            .where(Subscription.status.in_(LIVE), Plan.currency == currency)
            .group_by(Plan.id, group)
            .order_by(Plan.code)
        )
    ).all()
    by_status = dict.fromkeys(("active", "trial", "grace", "paused"), 0)
    by_plan: dict[str, schemas.PlanCount] = {}
    in_dunning = 0
    for plan_id, code, name, status, count, dunned in rows:
        by_status[status] += count
        in_dunning += dunned
        plan = by_plan.setdefault(
            code, schemas.PlanCount(plan_id=plan_id, code=code, name=name, subscribers=0)
        )
        plan.subscribers += count
    counts = schemas.StatusCounts(**by_status, total=sum(by_status.values()))
    return counts, list(by_plan.values()), in_dunning


async def monthly_recurring_revenue(session: AsyncSession, currency: str, now: datetime) -> int:
    """MRR now, in minor units (rounded once, on the total)."""
    charge = sa.case(
        (
            sa.and_(Payment.purpose.in_(RECURRING), Payment.amount > 0),
            sa.cast(Payment.amount, sa.Numeric) / Payment.months,
        ),
        else_=sa.cast(Plan.price_amount, sa.Numeric),
    )
    per_month = sa.case(
        (Plan.period_unit == "day", charge * DAYS_PER_MONTH / Plan.period_days),
        else_=charge,
    )
    total = await session.scalar(
        sa.select(sa.func.coalesce(sa.func.round(sa.func.sum(per_month)), 0))
        .select_from(Subscription)
        .join(Plan, Plan.id == Subscription.plan_id)
        .outerjoin(Payment, Payment.id == Subscription.latest_payment_id)
        .where(
            Plan.currency == currency,
            sa.or_(
                Subscription.status == "grace",
                sa.and_(Subscription.status == "active", sa.not_(_in_trial(now))),
            ),
        )
    )
    return int(total or 0)
