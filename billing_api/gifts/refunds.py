"""Refunding a gift's payment: before redemption it voids the gift, after it the months go.

* **Unredeemed** (``paid``): refundable by the plan's refund policy with nothing used --
  ``window_then_prorata``: in full (no day of it has run); ``window_only``: in full within the
  plan's window, else nothing; ``none``: nothing. When the refund is asked for, the gift turns
  ``refunding`` and its code stops working, so it cannot be redeemed while the money travels
  back; the refund done, the gift is ``refunded`` and its deferred revenue recognised (the refund
  itself posts to ``refunds``); refused by the provider, the gift is ``paid`` again.
* **Redeemed**: like the subscription it became -- the window from the payment, then the unused
  whole days of the span the gift added (``period_start``..``period_end``) for
  ``window_then_prorata``. The refund done, a subscription the gift started is canceled now, a
  subscription it extended loses what is left of the gift's span; the gift is ``refunded``.
* A subscription extended by a gift prorates a refund of its own payment over the period that
  payment bought (:func:`gifted_span`), not over the gift's days.
* **Expired, refunded, revoked**: nothing (an admin may override the window).

A payment that paid for a gift after another one did is refunded in full by billing on its own
(:mod:`billing_api.refunds.queued`) and changes nothing here.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from billing_api import entitlements, locks
from billing_api.gifts import money, transitions
from billing_api.models import Gift, GiftStatus, Payment, Plan, Subscription
from billing_api.refunds import policy
from billing_api.refunds.policy import RefundQuote
from billing_api.subscriptions import transitions as subscription_transitions
from shared import events

Events = list[events.EventPayload]


async def quote(
    session: AsyncSession, payment: Payment, *, now: datetime, override_window: bool
) -> RefundQuote:
    """The refundable amount of a gift's (succeeded, paid) ``payment`` and its rule."""
    assert payment.gift_id is not None and payment.paid_at is not None
    gift = await session.get(Gift, payment.gift_id)
    assert gift is not None
    left = max(0, payment.amount - payment.refunded_amount)
    if override_window:
        return RefundQuote(left, "full refund (window overridden by an admin)")
    if gift.latest_payment_id != payment.id:
        return RefundQuote(0, "this payment did not pay for the gift")
    plan = await session.get(Plan, gift.plan_id)
    assert plan is not None

    def by_policy(start: datetime | None, end: datetime | None) -> RefundQuote:
        return policy.quote_refund(
            paid=payment.amount,
            paid_at=payment.paid_at or now,
            now=now,
            period_start=start,
            period_end=end,
            policy=plan.refund_policy,
            window_minutes=plan.refund_window_minutes,
            already_refunded=payment.refunded_amount,
        )

    if gift.status == GiftStatus.PAID:
        if plan.refund_policy == "window_then_prorata":
            return RefundQuote(left, "unredeemed gift: full refund")
        return by_policy(None, None)
    if gift.status == GiftStatus.REDEEMED:
        subscription = (
            await session.get(Subscription, gift.subscription_id) if gift.subscription_id else None
        )
        if subscription is None or not _holds_span(subscription, gift):
            # ended, or its period is another one now (renewed, upgraded): the window rule
            # alone, as for a subscription's older payment
            return by_policy(None, None)
        return by_policy(gift.period_start, gift.period_end)
    if gift.status == GiftStatus.REFUNDING:
        return RefundQuote(0, "a refund is in progress")
    return RefundQuote(0, f"the gift is {gift.status}")


async def _paid_gift(session: AsyncSession, payment: Payment) -> Gift | None:
    """The gift ``payment`` paid for, locked (already, by the refund's lock order); None when
    the payment is not the one that paid for it."""
    if payment.gift_id is None:
        return None
    gift = await locks.lock_gift(session, payment.gift_id)
    if gift is None or gift.latest_payment_id != payment.id:
        return None
    return gift


async def refund_started(session: AsyncSession, payment: Payment) -> None:
    """A refund of the gift's payment was created: an unredeemed gift's code stops working."""
    gift = await _paid_gift(session, payment)
    if gift is not None and transitions.is_unredeemed(gift):
        transitions.start_refund(gift)


async def refund_failed(session: AsyncSession, payment: Payment) -> None:
    """The refund was refused: the gift's code works again."""
    gift = await _paid_gift(session, payment)
    if gift is not None and gift.status == GiftStatus.REFUNDING:
        transitions.refund_failed(gift)


async def take_back(
    session: AsyncSession, payment: Payment, *, now: datetime, refunded: bool
) -> Events:
    """The gift's payment was refunded (``refunded``) or disputed: an unredeemed gift is void
    (refunded, or revoked on a dispute) and its deferred revenue recognised; a redeemed one
    takes its months back from the redeemer. Returns the redeemer's events."""
    gift = await _paid_gift(session, payment)
    if gift is None:
        return []
    if gift.status in (GiftStatus.PAID, GiftStatus.REFUNDING):
        if refunded:
            transitions.refunded(gift, now=now)
        else:
            transitions.revoke(gift, now=now)
        await money.recognise(session, gift, why=f"{gift.status} before redemption")
        return []
    if gift.status != GiftStatus.REDEEMED or gift.subscription_id is None:
        return []
    assert gift.redeemed_by is not None
    assert gift.period_start is not None and gift.period_end is not None
    subscription = await locks.lock_subscription(session, gift.subscription_id)
    assert subscription is not None
    changes: Events = []
    if not _holds_span(subscription, gift):
        pass  # renewed or upgraded since: the gift's days are behind it or were replaced
    elif gift.started_subscription:
        if subscription_transitions.revocable(subscription):
            plan = await session.get(Plan, subscription.plan_id)
            assert plan is not None
            changes = subscription_transitions.revoke(
                subscription, plan, now=now, refund_amount=None
            )
    else:
        changes = subscription_transitions.take_back_gift(
            subscription, gift_start=gift.period_start, gift_end=gift.period_end, now=now
        )
    if refunded:
        transitions.taken_back(gift, now=now)
    await entitlements.publish_snapshot(session, gift.redeemed_by)
    return changes


def _holds_span(subscription: Subscription, gift: Gift) -> bool:
    """The live subscription's current period still holds the gift's days (neither a renewal
    nor an upgrade has started another period since)."""
    start = subscription.current_period_start
    return (
        subscription_transitions.is_live(subscription)
        and start is not None
        and gift.period_start is not None
        and gift.period_start >= start
    )


async def gifted_span(session: AsyncSession, subscription: Subscription) -> timedelta:
    """How much of the subscription's current period redeemed gifts added (after its paid
    part): a refund of the subscription's own payment prorates over the period that payment
    bought, never over gift days it did not pay for."""
    if subscription.current_period_start is None:
        return timedelta(0)
    spans = await session.execute(
        sa.select(Gift.period_start, Gift.period_end).where(
            Gift.subscription_id == subscription.id,
            Gift.status == GiftStatus.REDEEMED,
            ~Gift.started_subscription,
            Gift.period_start >= subscription.current_period_start,
        )
    )
    return sum(
        (end - start for start, end in spans if start is not None and end is not None),
        timedelta(0),
    )
