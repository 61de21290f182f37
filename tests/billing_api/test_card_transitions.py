"""The saved card's transitions as tables (the states of :mod:`test_transitions`): a renewal
declined for good, the card expiry reminder, and the card summary following the saved method.
Pure: the rows are built in memory, no database."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest

from billing_api.models import Payment, Subscription, SubscriptionStatus
from billing_api.periods import add_months
from billing_api.subscriptions import transitions
from billing_api.subscriptions.transitions import SubscriptionTransitionNotAllowed
from tests.billing_api.test_transitions import (
    END,
    GRACE_END,
    MONTHLY,
    NOW,
    RENEWAL,
    STATES,
    subscription,
)

URL = "https://cinema.example/account?subscription_id=00000000-0000-0000-0000-000000000001"
CARD_END = datetime(2026, 5, 1, tzinfo=UTC)  # a card expiring April 2026: before END's renewal
CARD = {"card_brand": "visa", "card_last4": "4242", "card_exp_month": 4, "card_exp_year": 2026}

CARD_STATES: dict[str, Callable[[], Subscription]] = {
    **STATES,
    "active, card expiring": lambda: subscription(
        SubscriptionStatus.ACTIVE, **CARD, card_expires_at=CARD_END
    ),
    "active, card good past the renewal": lambda: subscription(
        SubscriptionStatus.ACTIVE,
        **{**CARD, "card_exp_year": 2027},
        card_expires_at=datetime(2027, 5, 1, tzinfo=UTC),
    ),
    "active, ending, card expiring": lambda: subscription(
        SubscriptionStatus.ACTIVE, cancel_at_period_end=True, **CARD, card_expires_at=CARD_END
    ),
}

ACTIONS: dict[str, Callable[[Subscription], transitions.Events]] = {
    "decline renewal for good": lambda s: transitions.record_hard_decline(
        s, MONTHLY, RENEWAL, reason="lost card", update_url=URL, now=NOW
    ),
    "remind of card expiry": lambda s: transitions.remind_card_expiring(s, MONTHLY, update_url=URL),
}

FIELDS = (
    "status",
    "renewal_attempts",
    "dunning_started_at",
    "next_renewal_at",
    "grace_until",
    "current_period_end",
    "card_expiry_reminded_for",
)

ALLOWED: list[tuple[str, str, dict[str, Any], list[str]]] = [
    (  # before the period ends: grace at once, to the period end + the plan's grace days
        "active",
        "decline renewal for good",
        {
            "status": SubscriptionStatus.GRACE,
            "renewal_attempts": 1,
            "dunning_started_at": NOW,
            "grace_until": END + timedelta(days=3),
        },
        ["subscription.payment_method_required"],
    ),
    (  # a retry in grace declined for good: no more retries, the grace stays as it was
        "grace",
        "decline renewal for good",
        {"renewal_attempts": 3, "next_renewal_at": None},
        ["subscription.payment_method_required"],
    ),
    (
        "active, card expiring",
        "remind of card expiry",
        {"card_expiry_reminded_for": CARD_END},
        ["payment_method.expiring"],
    ),
]

REFUSED: list[tuple[str, str]] = [
    *(
        (state, "decline renewal for good")
        for state in ("pending", "active, ending", "active, auto-renew off", "expired", "canceled")
    ),
    *(
        (state, "remind of card expiry")
        for state in (
            "active",  # no card known
            "active, card good past the renewal",
            "active, ending, card expiring",
            "grace",
            "canceled",
        )
    ),
]


def fields_of(row: Subscription) -> dict[str, Any]:
    return {name: getattr(row, name) for name in FIELDS}


class TestAllowed:
    @pytest.mark.parametrize(
        ("state", "action", "changed", "published"),
        ALLOWED,
        ids=[f"{state} + {action}" for state, action, _, _ in ALLOWED],
    )
    def test_sets_every_field_that_goes_with_it_and_says_so(
        self, state: str, action: str, changed: dict[str, Any], published: list[str]
    ) -> None:
        row = CARD_STATES[state]()
        before = fields_of(row)

        announced = ACTIONS[action](row)

        after = fields_of(row)
        assert {name: after[name] for name in FIELDS if after[name] != before[name]} == changed
        assert [event.event_type for event in announced] == published


class TestRefused:
    @pytest.mark.parametrize(
        ("state", "action"), REFUSED, ids=[f"{state} + {action}" for state, action in REFUSED]
    )
    def test_is_refused_and_changes_nothing(self, state: str, action: str) -> None:
        row = CARD_STATES[state]()
        before = fields_of(row)

        with pytest.raises(SubscriptionTransitionNotAllowed):
            ACTIONS[action](row)

        assert fields_of(row) == before


class TestNotices:
    def test_a_hard_decline_asks_for_another_card_with_the_link_and_the_grace(self) -> None:
        [notice] = ACTIONS["decline renewal for good"](CARD_STATES["grace"]())

        assert notice.model_dump(include={"reason", "grace_until", "update_url"}) == {
            "reason": "lost card",
            "grace_until": GRACE_END + timedelta(days=3),
            "update_url": URL,
        }

    def test_the_expiry_reminder_shows_the_card_and_the_renewal_it_would_fail(self) -> None:
        [notice] = ACTIONS["remind of card expiry"](CARD_STATES["active, card expiring"]())

        assert notice.model_dump(include={"card", "next_renewal_at", "update_url"}) == {
            "card": {"brand": "visa", "last4": "4242", "exp_month": 4, "exp_year": 2026},
            "next_renewal_at": END,
            "update_url": URL,
        }


def paid_with(ref: str | None, **card: Any) -> Payment:
    return Payment(
        id=uuid4(),
        purpose="renewal",
        plan_id=MONTHLY.id,
        amount=MONTHLY.price_amount,
        currency="RUB",
        months=1,
        payment_method_ref=ref,
        **card,
    )


class TestCardFollowsTheSavedMethod:
    def test_a_payment_with_a_card_summary_replaces_the_saved_one(self) -> None:
        row = subscription(SubscriptionStatus.ACTIVE, **CARD, card_expires_at=CARD_END)
        new = {
            "card_brand": "mir",
            "card_last4": "0004",
            "card_exp_month": 12,
            "card_exp_year": 2030,
        }

        transitions.renew(row, MONTHLY, paid_with("card-1", **new))

        assert (row.card_brand, row.card_last4, row.card_exp_month) == ("mir", "0004", 12)
        assert row.card_expires_at == datetime(2031, 1, 1, tzinfo=UTC)
        assert row.current_period_end == add_months(END, 1)

    def test_a_payment_without_one_keeps_the_saved_card_of_the_same_method(self) -> None:
        row = subscription(
            SubscriptionStatus.ACTIVE,
            **CARD,
            card_expires_at=CARD_END,
            card_expiry_reminded_for=CARD_END,
        )

        transitions.renew(row, MONTHLY, paid_with("card-1"))

        assert (row.card_last4, row.card_expires_at) == ("4242", CARD_END)
        assert row.card_expiry_reminded_for == CARD_END, "the same card is not reminded again"

    def test_another_method_without_a_summary_forgets_the_old_card(self) -> None:
        row = subscription(
            SubscriptionStatus.ACTIVE,
            **CARD,
            card_expires_at=CARD_END,
            card_expiry_reminded_for=CARD_END,
        )

        # a renewal paid at a card update's checkout, which saved another method
        transitions.renew(row, MONTHLY, paid_with("card-9", save_payment_method=True))

        assert (row.payment_method_ref, row.card_last4, row.card_expires_at) == (
            "card-9",
            None,
            None,
        )
        assert row.card_expiry_reminded_for is None
