"""Redeeming a gift code: the months go to the caller, once.

The code is looked up by its unique index and the gift row is locked before its state is read,
so of two concurrent redeems of one code the second waits and then finds it redeemed (409). The
caller's active subscription of the plan (its paid period still running) is extended after that
period; without one a new subscription starts now and does not renew. Either way the deferred
revenue is recognised and the caller's entitlement snapshot is published in the same
transaction, so access follows as soon as access_api reads the event.

Locks: the gift (what was bought), then the subscription, then the entitlement snapshot.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID, uuid4

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from billing_api import entitlements, locks
from billing_api.config import BillingSettings
from billing_api.customers import Customer
from billing_api.gifts import codes, limits, money, transitions
from billing_api.gifts.schemas import RedeemedOut
from billing_api.models import Gift, Plan, Subscription, SubscriptionStatus
from billing_api.subscriptions import transitions as subscription_transitions
from shared import clock, outbox
from shared.errors import NotFound


class GiftCodeNotFound(NotFound):
    default_detail = "no gift has this code"


async def redeem(
    session: AsyncSession, settings: BillingSettings, customer: Customer, typed_code: str
) -> RedeemedOut:
    """Redeem ``typed_code`` for the customer. A wrong code is counted (the route commits the
    count before answering 404); past the limit every attempt answers 429."""
    now = clock.now()
    await limits.check_wrong_codes(session, customer.id, now=now, settings=settings)
    code = codes.normalise(typed_code)
    gift_id = await session.scalar(sa.select(Gift.id).where(Gift.code == code)) if code else None
    if gift_id is None:
        await limits.count_wrong_code(session, customer.id, now=now, settings=settings)
        raise GiftCodeNotFound()
    gift = await locks.lock_gift(session, gift_id)
    assert gift is not None
    transitions.check_redeemable(gift, now=now)
    plan = await session.get(Plan, gift.plan_id)
    assert plan is not None
    subscription = await _live_subscription(session, customer.id, plan.id, now)
    started = subscription is None
    if subscription is None:
        subscription = Subscription(
            id=uuid4(),
            user_id=customer.id,
            email=customer.email,
            locale=gift.locale,
            plan_id=plan.id,
            trial=False,
        )
        start, end = subscription_transitions.start_gifted(
            subscription, plan, months=gift.months, now=now
        )
        session.add(subscription)
    else:
        start, end = subscription_transitions.extend_with_gift(
            subscription, plan, months=gift.months, now=now
        )
    await session.flush()
    changes = transitions.redeem(
        gift,
        plan,
        user_id=customer.id,
        subscription_id=subscription.id,
        period_start=start,
        period_end=end,
        started_subscription=started,
        now=now,
    )
    await money.recognise(session, gift, why="redeemed")
    await entitlements.publish_snapshot(session, customer.id)
    await outbox.add_all(session, changes)
    assert subscription.current_period_end is not None
    return RedeemedOut(
        gift_id=gift.id,
        status=gift.status,
        plan_id=plan.id,
        months=gift.months,
        subscription_id=subscription.id,
        current_period_end=subscription.current_period_end,
        started_subscription=started,
    )


async def _live_subscription(
    session: AsyncSession, user_id: UUID, plan_id: UUID, now: datetime
) -> Subscription | None:
    """The user's active subscription of the plan that a gift may extend (the one ending last),
    locked (in id order, billing's order within a table) and re-read; None when there is none."""
    candidates = await locks.lock_all(
        session,
        Subscription,
        (Subscription.user_id == user_id)
        & (Subscription.plan_id == plan_id)
        & (Subscription.status == SubscriptionStatus.ACTIVE),
    )
    extendable = [s for s in candidates if subscription_transitions.extends_with_gift(s, now=now)]
    return max(extendable, key=lambda s: (s.current_period_end, s.id), default=None)
