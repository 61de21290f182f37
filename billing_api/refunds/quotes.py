"""What a payment can still give back, and the rule that decides it.

Which payments are refundable:

* subscription and renewal payments, by their plan's ``refund_policy`` and window; unused days
  are prorated only for the payment that paid for the subscription's current period (an older
  period's payment gets the window rule alone);
* movie purchases: a full refund within :data:`PURCHASE_REFUND_WINDOW_MINUTES`, then nothing
  (a movie has no period to prorate, and a bought film can be watched at once);
* never wallet top-ups: the balance they added may already be spent;
* nothing of a payment credited to a plan upgrade (:mod:`billing_api.refunds.plan_credit`);
* gifts by :mod:`billing_api.gifts.refunds` (before redemption: the plan's policy with nothing
  used; after it: like the subscription the gift became).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from billing_api.gifts import refunds as gift_refunds
from billing_api.models import (
    Payment,
    PaymentPurpose,
    PaymentStatus,
    Plan,
    Refund,
    RefundStatus,
    Subscription,
)
from billing_api.refunds import plan_credit, policy
from billing_api.refunds.policy import RefundQuote
from billing_api.subscriptions import transitions

PURCHASE_REFUND_WINDOW_MINUTES = 60
REFUNDABLE_STATUSES = (PaymentStatus.SUCCEEDED, PaymentStatus.PARTIALLY_REFUNDED)
# A refund billing decided on its own (a payment that came for something no longer sold) is
# ``queued`` until a job has asked the gateway for it (:mod:`billing_api.refunds.queued`); then
# it is ``pending`` like any other.
IN_PROGRESS = (RefundStatus.QUEUED, RefundStatus.PENDING)


def mark_refunded(payment: Payment) -> None:
    """``refunded`` or ``partially_refunded`` by ``refunded_amount``, once a refund of ``payment``
    has succeeded; a payment in any other state (disputed, say) keeps it."""
    if payment.status in (*REFUNDABLE_STATUSES, PaymentStatus.REFUNDED):
        payment.status = (
            PaymentStatus.REFUNDED
            if payment.refunded_amount >= payment.amount
            else PaymentStatus.PARTIALLY_REFUNDED
        )


@dataclass(frozen=True)
class Terms:
    """The refund terms a payment was sold under."""

    policy: str
    window_minutes: int
    period_start: datetime | None = None
    period_end: datetime | None = None


async def quote_payment(
    session: AsyncSession, payment: Payment, *, now: datetime, override_window: bool = False
) -> RefundQuote:
    """The refundable amount of ``payment`` at ``now`` and the rule that decided it."""
    if payment.purpose == PaymentPurpose.TOP_UP:
        return RefundQuote(0, "wallet top-ups are not refundable")
    if payment.status == PaymentStatus.REFUNDED:
        return RefundQuote(0, "already refunded")
    if payment.status not in REFUNDABLE_STATUSES or payment.paid_at is None:
        return RefundQuote(0, f"payment is {payment.status}")
    if payment.method not in ("card", "wallet") or payment.amount == 0:
        return RefundQuote(0, "nothing was paid")
    if payment.purpose == PaymentPurpose.GIFT:
        return await gift_refunds.quote(session, payment, now=now, override_window=override_window)
    if await plan_credit.credited_to_upgrade(session, payment):
        return RefundQuote(0, "credited to a plan upgrade")
    terms = await payment_terms(session, payment)
    if terms is None:
        return RefundQuote(0, f"{payment.purpose} payments are not refundable")
    quote = policy.quote_refund(
        paid=payment.amount,
        paid_at=payment.paid_at,
        now=now,
        period_start=terms.period_start,
        period_end=terms.period_end,
        policy=terms.policy,
        window_minutes=terms.window_minutes,
        already_refunded=payment.refunded_amount,
        override_window=override_window,
    )
    if quote.amount == 0 and await _refund_in_progress(session, payment):
        return RefundQuote(0, "a refund is in progress")
    return quote


async def _refund_in_progress(session: AsyncSession, payment: Payment) -> bool:
    pending = await session.scalar(
        sa.select(Refund.id)
        .where(Refund.payment_id == payment.id, Refund.status.in_(IN_PROGRESS))
        .limit(1)
    )
    return pending is not None


async def payment_terms(session: AsyncSession, payment: Payment) -> Terms | None:
    if payment.purpose == PaymentPurpose.PURCHASE:
        return Terms("window_only", PURCHASE_REFUND_WINDOW_MINUTES)
    if payment.purpose not in (
        PaymentPurpose.SUBSCRIPTION,
        PaymentPurpose.RENEWAL,
        PaymentPurpose.UPGRADE,
    ):
        return None
    if payment.subscription_id is None:
        return None
    subscription = await session.get(Subscription, payment.subscription_id)
    assert subscription is not None
    plan = await session.get(Plan, subscription.plan_id)
    assert plan is not None
    if await _paid_current_period(session, payment, subscription):
        end = subscription.current_period_end
        if end is not None:  # gift months added after the paid part were not paid for here
            end -= await gift_refunds.gifted_span(session, subscription)
        return Terms(
            plan.refund_policy,
            plan.refund_window_minutes,
            subscription.current_period_start,
            end,
        )
    return Terms(plan.refund_policy, plan.refund_window_minutes)


async def _paid_current_period(
    session: AsyncSession, payment: Payment, subscription: Subscription
) -> bool:
    """Whether ``payment`` is the one that paid for the subscription's current period.

    That is the subscription's most recently paid payment while the subscription runs: the
    checkout payment first, each successful renewal after it.
    """
    if not transitions.is_live(subscription):
        return False
    if subscription.current_period_start is None or subscription.current_period_end is None:
        return False
    latest = await session.scalar(
        sa.select(Payment.id)
        .where(
            Payment.subscription_id == subscription.id,
            Payment.paid_at.is_not(None),
            # a renewal given back whole as unused (paid later, for nothing) does not count
            sa.or_(Payment.amount == 0, Payment.refunded_amount < Payment.amount),
            # nor one billing refunds on its own, even while that refund is parked (its
            # amount freed for staff to refund by hand)
            ~sa.exists().where(Refund.payment_id == Payment.id, Refund.billing_decided),
        )
        .order_by(Payment.paid_at.desc(), Payment.id.desc())
        .limit(1)
    )
    return latest == payment.id
