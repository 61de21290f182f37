"""The gift events a person reads: built from the gift and its plan, for the transitions."""

from __future__ import annotations

from billing_api.models import Gift, Payment, Plan
from billing_api.subscriptions.notices import plan_summary
from shared import events
from shared.money import Money


def purchased(gift: Gift, plan: Plan, payment: Payment) -> events.GiftPurchased:
    assert gift.code is not None
    return events.GiftPurchased(
        user_id=gift.buyer_id,
        email=gift.buyer_email,
        locale=gift.locale,
        gift_id=gift.id,
        plan=plan_summary(plan),
        months=gift.months,
        amount=Money(amount=payment.amount, currency=payment.currency),
        code=gift.code,
        recipient_email=gift.recipient_email,
        deliver_at=gift.deliver_at,
        expires_at=gift.expires_at,
    )


def delivered(gift: Gift, plan: Plan, *, redeem_url: str) -> events.GiftDelivered:
    assert gift.code is not None
    return events.GiftDelivered(
        user_id=gift.buyer_id,
        email=gift.recipient_email,  # the recipient's address: this email is for them
        locale=gift.locale,
        gift_id=gift.id,
        plan=plan_summary(plan),
        months=gift.months,
        code=gift.code,
        redeem_url=redeem_url,
        message=gift.message,
        from_email=gift.buyer_email,
        expires_at=gift.expires_at,
    )


def redeemed(gift: Gift, plan: Plan) -> events.GiftRedeemed:
    assert gift.redeemed_at is not None
    return events.GiftRedeemed(
        user_id=gift.buyer_id,
        email=gift.buyer_email,
        locale=gift.locale,
        gift_id=gift.id,
        plan=plan_summary(plan),
        months=gift.months,
        recipient_email=gift.recipient_email,
        redeemed_at=gift.redeemed_at,
    )


def expiring(gift: Gift, plan: Plan) -> events.GiftExpiring:
    assert gift.code is not None and gift.expires_at is not None
    return events.GiftExpiring(
        user_id=gift.buyer_id,
        email=gift.buyer_email,
        locale=gift.locale,
        gift_id=gift.id,
        plan=plan_summary(plan),
        months=gift.months,
        code=gift.code,
        recipient_email=gift.recipient_email,
        expires_at=gift.expires_at,
    )
