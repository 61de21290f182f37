"""The card expiry reminder: a renewing subscription whose saved card stops working before its
next renewal is told so, once per card, ``BILLING_CARD_EXPIRY_NOTICE_DAYS`` before the card's
expiry (or at once if it expired already), with a link to update the card.

A card works through the last day of its expiry month (``card_expires_at`` is the first moment
after it, UTC). The next renewal is charged at the period end, so a card that expires before
``current_period_end`` will be declined there. The reminder is sent once per
(subscription, card): ``card_expiry_reminded_for`` records the expiry it was sent for, so the
same card is never reminded twice and a new card (a new expiry, or the same expiry on another
saved method, see :func:`billing_api.subscriptions.transitions._keep_card`) may be reminded
again. Claimed with ``FOR UPDATE SKIP LOCKED`` in batches: safe to run twice and from several
workers at once.
"""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from billing_api.lifecycle.service import BATCH, JobContext
from billing_api.models import Plan, Subscription, SubscriptionStatus
from billing_api.subscriptions import links, transitions
from shared import outbox


async def remind_card_expiring(ctx: JobContext) -> int:
    """Send ``payment_method.expiring`` to the subscriptions due for it (one batch)."""
    horizon = ctx.now + timedelta(days=ctx.settings.card_expiry_notice_days)
    async with ctx.sessions() as session, session.begin():
        due = list(
            await session.scalars(
                sa.select(Subscription)
                .where(
                    Subscription.status == SubscriptionStatus.ACTIVE,
                    Subscription.auto_renew,
                    ~Subscription.cancel_at_period_end,
                    Subscription.card_expires_at.is_not(None),
                    Subscription.card_expiry_reminded_for.is_distinct_from(
                        Subscription.card_expires_at
                    ),
                    Subscription.card_expires_at <= horizon,
                    Subscription.card_expires_at < Subscription.current_period_end,
                )
                .order_by(Subscription.card_expires_at)
                .limit(BATCH)
                .with_for_update(skip_locked=True)
            )
        )
        for subscription in due:
            plan = await session.get(Plan, subscription.plan_id)
            assert plan is not None
            update_url = links.update_url(ctx.settings.account_url, subscription.id)
            await outbox.add_all(
                session,
                transitions.remind_card_expiring(subscription, plan, update_url=update_url),
            )
    return len(due)
