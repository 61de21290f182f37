"""The record of every pause asked for (``subscription_pause``): how many a year, and how each
one ended when that was not on its own (taken back before it began, ended early)."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from billing_api.models import Subscription, SubscriptionPause

YEAR = timedelta(days=365)


async def pauses_in_year(session: AsyncSession, subscription: Subscription, now: datetime) -> int:
    """Pauses of the subscription that started in the last 365 days or are still to start,
    those taken back before they began left out."""
    count = await session.scalar(
        sa.select(sa.func.count())
        .select_from(SubscriptionPause)
        .where(
            SubscriptionPause.subscription_id == subscription.id,
            SubscriptionPause.taken_back_at.is_(None),
            SubscriptionPause.starts_at > now - YEAR,
        )
    )
    return int(count or 0)


def record(subscription: Subscription, months: int) -> SubscriptionPause:
    """The record of the pause just scheduled on ``subscription``."""
    assert subscription.pause_starts_at is not None and subscription.pause_resumes_at is not None
    return SubscriptionPause(
        subscription_id=subscription.id,
        user_id=subscription.user_id,
        months=months,
        starts_at=subscription.pause_starts_at,
        resumes_at=subscription.pause_resumes_at,
    )


async def _current(
    session: AsyncSession, subscription: Subscription, starts_at: datetime
) -> SubscriptionPause | None:
    found: SubscriptionPause | None = await session.scalar(
        sa.select(SubscriptionPause)
        .where(
            SubscriptionPause.subscription_id == subscription.id,
            SubscriptionPause.starts_at == starts_at,
            SubscriptionPause.taken_back_at.is_(None),
        )
        .order_by(SubscriptionPause.created_at.desc())
        .limit(1)
    )
    return found


async def mark_taken_back(
    session: AsyncSession, subscription: Subscription, starts_at: datetime, now: datetime
) -> None:
    """The pause from ``starts_at`` was dropped before it began: it does not count."""
    pause = await _current(session, subscription, starts_at)
    if pause is not None:
        pause.taken_back_at = now


async def mark_resumed(
    session: AsyncSession, subscription: Subscription, starts_at: datetime, now: datetime
) -> None:
    """The running pause from ``starts_at`` was ended early by the subscriber."""
    pause = await _current(session, subscription, starts_at)
    if pause is not None and pause.resumed_at is None:
        pause.resumed_at = now
