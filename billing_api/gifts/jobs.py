"""The gift jobs: deliver at ``deliver_at``, remind before expiry, expire when unredeemed.

Each is a function of the session factory, the settings and ``now``, claims a batch of gifts
with ``FOR UPDATE SKIP LOCKED`` (two workers never take the same gift) and commits it; each is
safe to run twice (a gift is delivered, reminded and expired once: the transitions refuse a
second time and the claims no longer find it).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing_api.config import BillingSettings
from billing_api.gifts import codes, money, transitions
from billing_api.models import Gift, GiftStatus, Plan
from shared import outbox

BATCH = 200


async def _claim(session: AsyncSession, where: sa.ColumnElement[bool]) -> list[Gift]:
    return list(
        await session.scalars(
            sa.select(Gift)
            .where(Gift.status == GiftStatus.PAID, where)
            .order_by(Gift.id)
            .limit(BATCH)
            .with_for_update(skip_locked=True)
        )
    )


async def deliver_due(
    sessions: async_sessionmaker[AsyncSession], settings: BillingSettings, now: datetime
) -> int:
    """Email the recipients whose gift's ``deliver_at`` has come."""
    async with sessions() as session, session.begin():
        due = await _claim(session, Gift.delivered_at.is_(None) & (Gift.deliver_at <= now))
        for gift in due:
            plan = await session.get(Plan, gift.plan_id)
            assert plan is not None and gift.code is not None
            url = codes.redeem_url(settings.account_url, gift.code)
            await outbox.add_all(session, transitions.deliver(gift, plan, redeem_url=url, now=now))
    return len(due)


async def remind_expiring(
    sessions: async_sessionmaker[AsyncSession], settings: BillingSettings, now: datetime
) -> int:
    """Tell the buyers of unredeemed gifts that expire within the notice days (once)."""
    horizon = now + timedelta(days=settings.gift_expiring_notice_days)
    async with sessions() as session, session.begin():
        due = await _claim(
            session,
            Gift.expiry_reminded_at.is_(None)
            & (Gift.expires_at > now)
            & (Gift.expires_at <= horizon),
        )
        for gift in due:
            plan = await session.get(Plan, gift.plan_id)
            assert plan is not None
            await outbox.add_all(session, transitions.remind_expiring(gift, plan))
    return len(due)


async def expire_due(sessions: async_sessionmaker[AsyncSession], now: datetime) -> int:
    """Unredeemed gifts past their validity expire; their deferred revenue is recognised."""
    async with sessions() as session, session.begin():
        due = await _claim(session, Gift.expires_at <= now)
        for gift in due:
            transitions.expire(gift, now=now)
            await money.recognise(session, gift, why="expired unredeemed")
    return len(due)
