"""Every change of state of a gift, as pure functions: the one place a gift's ``status`` is set.

::

    pending ──paid──▶ paid ──redeemed──▶ redeemed ──refunded (months taken back)──▶ refunded
       │ ▲             │ ├──refund asked──▶ refunding ──refund done──▶ refunded
       │ └─paid late─┐ │ │                    └──refund failed──▶ paid
       └─checkout expired──▶ abandoned
                       │ ├──validity over──▶ expired
                       │ └──staff revoke / payment disputed──▶ revoked

A transition takes the gift row (locked by the caller), checks the move is allowed, sets every
field that goes with it and returns the events to publish. It does no I/O; money (the ledger)
and the subscription a redemption feeds are the caller's. Delivery and the expiry reminder only
stamp ``delivered_at`` / ``expiry_reminded_at`` of a paid gift (each is sent once).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

from billing_api.gifts import notices
from billing_api.models import Gift, GiftStatus, Payment, Plan
from shared import events
from shared.errors import Conflict

Events = list[events.EventPayload]

AWAITING_PAYMENT = (GiftStatus.PENDING, GiftStatus.ABANDONED)


class GiftTransitionNotAllowed(Conflict):
    default_detail = "the gift cannot make this change in its current state"


class GiftAlreadyRedeemed(Conflict):
    default_detail = "this gift code has been redeemed already"


class GiftNotRedeemable(Conflict):
    default_detail = "this gift code cannot be redeemed"


def _refuse(gift: Gift, action: str) -> GiftTransitionNotAllowed:
    return GiftTransitionNotAllowed(f"cannot {action} gift {gift.id}: it is {gift.status}")


def awaits_payment(gift: Gift) -> bool:
    """A checkout's payment may still pay for it: waiting for it, or abandoned unpaid."""
    return gift.status in AWAITING_PAYMENT


def is_unredeemed(gift: Gift) -> bool:
    """Paid, and its code still works (a refund voids it)."""
    return gift.status == GiftStatus.PAID


def pay(gift: Gift, plan: Plan, payment: Payment, *, code: str, now: datetime) -> Events:
    """The checkout is paid: the gift gets its code and works for ``validity_days``."""
    if not awaits_payment(gift):
        raise _refuse(gift, "pay for")
    gift.status = GiftStatus.PAID
    gift.code = code
    gift.paid_at = now
    gift.expires_at = now + timedelta(days=gift.validity_days)
    gift.latest_payment_id = payment.id
    return [notices.purchased(gift, plan, payment)]


def abandon(gift: Gift, payment: Payment) -> Events:
    """The checkout of ``payment`` expired unpaid (only the gift's latest checkout abandons it)."""
    if gift.status != GiftStatus.PENDING or gift.latest_payment_id != payment.id:
        raise _refuse(gift, "abandon")
    gift.status = GiftStatus.ABANDONED
    return []


def abandons(gift: Gift, payment: Payment) -> bool:
    return gift.status == GiftStatus.PENDING and gift.latest_payment_id == payment.id


def deliver(gift: Gift, plan: Plan, *, redeem_url: str, now: datetime) -> Events:
    """Email the recipient the code and the link (once, for a gift still unredeemed)."""
    if not is_unredeemed(gift) or gift.delivered_at is not None:
        raise _refuse(gift, "deliver")
    gift.delivered_at = now
    return [notices.delivered(gift, plan, redeem_url=redeem_url)]


def check_redeemable(gift: Gift, *, now: datetime) -> None:
    """Raise the 409 a user gets for a code that no longer works (or works no more)."""
    if gift.status == GiftStatus.REDEEMED:
        raise GiftAlreadyRedeemed()
    if gift.status != GiftStatus.PAID:
        raise GiftNotRedeemable(f"this gift is {gift.status}")
    if gift.expires_at is not None and gift.expires_at <= now:
        raise GiftNotRedeemable("this gift has expired")


def redeem(
    gift: Gift,
    plan: Plan,
    *,
    user_id: UUID,
    subscription_id: UUID,
    period_start: datetime,
    period_end: datetime,
    started_subscription: bool,
    now: datetime,
) -> Events:
    """``user_id`` redeemed the code: the months went to ``subscription_id`` (the span
    ``period_start``..``period_end``); the buyer is told."""
    check_redeemable(gift, now=now)
    gift.status = GiftStatus.REDEEMED
    gift.redeemed_by = user_id
    gift.redeemed_at = now
    gift.subscription_id = subscription_id
    gift.period_start = period_start
    gift.period_end = period_end
    gift.started_subscription = started_subscription
    return [notices.redeemed(gift, plan)]


def taken_back(gift: Gift, *, now: datetime) -> Events:
    """The redeemed gift's payment was refunded: its months left the subscription (the
    caller took them back); the gift no longer holds a span of it."""
    if gift.status != GiftStatus.REDEEMED:
        raise _refuse(gift, "take back")
    gift.status = GiftStatus.REFUNDED
    gift.ended_at = now
    return []


def start_refund(gift: Gift) -> Events:
    """A refund of the unredeemed gift was asked for: the code stops working now, before the
    money is back, so it cannot be redeemed while the refund is on its way."""
    if not is_unredeemed(gift):
        raise _refuse(gift, "refund")
    gift.status = GiftStatus.REFUNDING
    return []


def refund_failed(gift: Gift) -> Events:
    """The refund was refused by the provider: the code works again."""
    if gift.status != GiftStatus.REFUNDING:
        raise _refuse(gift, "restore")
    gift.status = GiftStatus.PAID
    return []


def refunded(gift: Gift, *, now: datetime) -> Events:
    """The money is back with the buyer: the code is void for good."""
    if gift.status not in (GiftStatus.REFUNDING, GiftStatus.PAID):
        raise _refuse(gift, "void")
    gift.status = GiftStatus.REFUNDED
    gift.ended_at = now
    return []


def expire(gift: Gift, *, now: datetime) -> Events:
    """Nobody redeemed it in time."""
    if not is_unredeemed(gift) or gift.expires_at is None or gift.expires_at > now:
        raise _refuse(gift, "expire")
    gift.status = GiftStatus.EXPIRED
    gift.ended_at = now
    return []


def remind_expiring(gift: Gift, plan: Plan) -> Events:
    """Tell the buyer an unredeemed gift expires soon (once)."""
    if not is_unredeemed(gift) or gift.expiry_reminded_at is not None:
        raise _refuse(gift, "remind of")
    assert gift.expires_at is not None
    gift.expiry_reminded_at = gift.expires_at
    return [notices.expiring(gift, plan)]


def revocable(gift: Gift) -> bool:
    return gift.status in (GiftStatus.PAID, GiftStatus.REFUNDING)


def revoke(gift: Gift, *, now: datetime) -> Events:
    """Staff revoked the unredeemed gift, or its payment was disputed: the code is void."""
    if not revocable(gift):
        raise _refuse(gift, "revoke")
    gift.status = GiftStatus.REVOKED
    gift.ended_at = now
    return []
