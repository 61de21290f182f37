"""Every gift transition as a table: (state, action) → (state, events), and the pairs that are
refused. Pure: the rows are built in memory, no database."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest

from billing_api.gifts import transitions
from billing_api.gifts.transitions import (
    GiftAlreadyRedeemed,
    GiftNotRedeemable,
    GiftTransitionNotAllowed,
)
from billing_api.models import Gift, GiftStatus, Payment, Plan

NOW = datetime(2026, 5, 20, 12, 0, tzinfo=UTC)
PLAN = Plan(id=uuid4(), code="basic", name="Basic")
CODE = "ABCD-EFGH-JKMN-PQRS"


def payment() -> Payment:
    return Payment(id=uuid4(), amount=29900, currency="RUB", description="gift")


def gift(status: GiftStatus) -> Gift:
    row = Gift(
        id=uuid4(),
        buyer_id=uuid4(),
        buyer_email="buyer@example.com",
        locale="en",
        plan_id=PLAN.id,
        months=2,
        recipient_email="friend@example.com",
        validity_days=365,
        status=status,
        latest_payment_id=uuid4(),
    )
    if status not in (GiftStatus.PENDING, GiftStatus.ABANDONED):
        row.code = CODE
        row.paid_at = NOW - timedelta(days=1)
        row.expires_at = NOW + timedelta(days=364)
    return row


def pay(row: Gift) -> list[Any]:
    return transitions.pay(row, PLAN, payment(), code=CODE, now=NOW)


def redeem(row: Gift) -> list[Any]:
    return transitions.redeem(
        row,
        PLAN,
        user_id=uuid4(),
        subscription_id=uuid4(),
        period_start=NOW,
        period_end=NOW + timedelta(days=61),
        started_subscription=True,
        now=NOW,
    )


ACTIONS: dict[str, Callable[[Gift], list[Any]]] = {
    "pay": pay,
    "deliver": lambda row: transitions.deliver(row, PLAN, redeem_url="https://x/gifts", now=NOW),
    "redeem": redeem,
    "start_refund": transitions.start_refund,
    "refund_failed": transitions.refund_failed,
    "refunded": lambda row: transitions.refunded(row, now=NOW),
    "taken_back": lambda row: transitions.taken_back(row, now=NOW),
    "expire": lambda row: transitions.expire(row, now=NOW + timedelta(days=365)),
    "remind_expiring": lambda row: transitions.remind_expiring(row, PLAN),
    "revoke": lambda row: transitions.revoke(row, now=NOW),
}

S = GiftStatus
ALLOWED: dict[tuple[GiftStatus, str], tuple[GiftStatus, list[str]]] = {
    (S.PENDING, "pay"): (S.PAID, ["gift.purchased"]),
    (S.ABANDONED, "pay"): (S.PAID, ["gift.purchased"]),
    (S.PAID, "deliver"): (S.PAID, ["gift.delivered"]),
    (S.PAID, "redeem"): (S.REDEEMED, ["gift.redeemed"]),
    (S.PAID, "start_refund"): (S.REFUNDING, []),
    (S.REFUNDING, "refund_failed"): (S.PAID, []),
    (S.REFUNDING, "refunded"): (S.REFUNDED, []),
    (S.PAID, "refunded"): (S.REFUNDED, []),
    (S.REDEEMED, "taken_back"): (S.REFUNDED, []),
    (S.PAID, "expire"): (S.EXPIRED, []),
    (S.PAID, "remind_expiring"): (S.PAID, ["gift.expiring"]),
    (S.PAID, "revoke"): (S.REVOKED, []),
    (S.REFUNDING, "revoke"): (S.REVOKED, []),
}
REFUSED = [
    (status, action)
    for status in GiftStatus
    for action in ACTIONS
    if (status, action) not in ALLOWED
]


@pytest.mark.parametrize(("status", "action"), sorted(ALLOWED))
def test_allowed(status: GiftStatus, action: str) -> None:
    row = gift(status)
    published = ACTIONS[action](row)
    want_status, want_events = ALLOWED[(status, action)]
    assert row.status == want_status
    assert [e.event_type for e in published] == want_events


@pytest.mark.parametrize(("status", "action"), REFUSED)
def test_refused(status: GiftStatus, action: str) -> None:
    row = gift(status)
    with pytest.raises((GiftTransitionNotAllowed, GiftAlreadyRedeemed, GiftNotRedeemable)):
        ACTIONS[action](row)
    assert row.status == status


def test_a_redeemed_code_answers_already_redeemed_others_not_redeemable() -> None:
    with pytest.raises(GiftAlreadyRedeemed):
        redeem(gift(S.REDEEMED))
    for status in (S.REFUNDING, S.REFUNDED, S.EXPIRED, S.REVOKED, S.PENDING):
        with pytest.raises(GiftNotRedeemable):
            redeem(gift(status))


def test_a_paid_gift_past_its_expiry_is_not_redeemable() -> None:
    row = gift(S.PAID)
    row.expires_at = NOW
    with pytest.raises(GiftNotRedeemable):
        redeem(row)


def test_paying_sets_the_code_and_the_validity() -> None:
    row = gift(S.PENDING)
    pay(row)
    assert row.code == CODE and row.paid_at == NOW
    assert row.expires_at == NOW + timedelta(days=365)


def test_delivery_and_reminder_happen_once() -> None:
    row = gift(S.PAID)
    transitions.deliver(row, PLAN, redeem_url="https://x/gifts", now=NOW)
    transitions.remind_expiring(row, PLAN)
    with pytest.raises(GiftTransitionNotAllowed):
        transitions.deliver(row, PLAN, redeem_url="https://x/gifts", now=NOW)
    with pytest.raises(GiftTransitionNotAllowed):
        transitions.remind_expiring(row, PLAN)
