"""The card update's pure rules as tables: which subscriptions may save a new card, which owe a
renewal (so the update's checkout pays it), what a paid setup checkout changes, and how the
dunning retries are held while a checkout pays the renewal and released when it expires."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from uuid import uuid4

import pytest
import sqlalchemy as sa

from billing_api.models import Payment, Subscription, SubscriptionStatus
from billing_api.subscriptions import transitions
from billing_api.subscriptions.transitions import (
    PaymentMethodNotUpdatable,
    SubscriptionTransitionNotAllowed,
)
from tests.billing_api.test_transitions import NOW, STATES, subscription

# The states of test_transitions, plus a paused one (its card is used when the pause ends).
ALL: dict[str, Callable[[], Subscription]] = {
    **STATES,
    "paused": lambda: subscription(SubscriptionStatus.PAUSED),
}
IN_DUNNING: dict[str, Callable[[], Subscription]] = {
    "active, in dunning": lambda: subscription(
        SubscriptionStatus.ACTIVE,
        renewal_attempts=1,
        dunning_started_at=NOW - timedelta(minutes=30),
        next_renewal_at=NOW + timedelta(minutes=30),
    )
}
COLUMNS = [column.key for column in sa.inspect(Subscription).column_attrs]


def card_update(card: str | None = "card-new") -> Payment:
    return Payment(id=uuid4(), purpose="card_update", amount=0, payment_method_ref=card, months=1)


@pytest.mark.parametrize(
    ("state", "may_update", "owes"),
    [
        ("pending", False, False),
        ("abandoned", False, False),
        ("active", True, False),
        ("active, ending", True, False),
        ("active, auto-renew off", True, False),
        ("active, downgrade scheduled", True, False),
        ("active, in dunning", True, True),
        ("grace", True, True),
        ("paused", True, False),
        ("expired", False, False),
        ("canceled", False, False),
    ],
)
def test_who_may_update_the_card_and_who_owes_a_renewal(
    state: str, may_update: bool, owes: bool
) -> None:
    row = {**ALL, **IN_DUNNING}[state]()
    if may_update:
        transitions.check_card_update(row)
    else:
        with pytest.raises(PaymentMethodNotUpdatable):
            transitions.check_card_update(row)
    assert transitions.owes_renewal(row) is owes


class TestReplacePaymentMethod:
    @pytest.mark.parametrize("state", ["active", "grace", "paused", "active, ending"])
    def test_the_new_card_is_saved_and_nothing_else_changes(self, state: str) -> None:
        row = ALL[state]()
        before = {c: getattr(row, c) for c in COLUMNS}

        assert transitions.replace_payment_method(row, card_update()) == []

        after = {c: getattr(row, c) for c in COLUMNS}
        assert {c for c in after if after[c] != before[c]} == {"payment_method_ref"}
        assert row.payment_method_ref == "card-new"

    @pytest.mark.parametrize("state", ["expired", "canceled"])
    def test_a_subscription_that_ended_meanwhile_keeps_its_card(self, state: str) -> None:
        row = ALL[state]()
        assert transitions.replace_payment_method(row, card_update()) == []
        assert row.payment_method_ref == "card-1"

    def test_a_payment_that_saved_no_card_is_refused(self) -> None:
        with pytest.raises(SubscriptionTransitionNotAllowed):
            transitions.replace_payment_method(ALL["active"](), card_update(card=None))


class TestHoldRenewals:
    def test_a_retry_due_before_the_checkout_closes_waits_and_comes_back_when_it_expires(
        self,
    ) -> None:
        row = IN_DUNNING["active, in dunning"]()
        scheduled = row.next_renewal_at
        until = NOW + timedelta(hours=24)

        assert transitions.hold_renewals(row, until=until) is True
        assert row.next_renewal_at == until
        transitions.release_renewals(row, held_until=until, resume_at=scheduled)
        assert row.next_renewal_at == scheduled

    def test_a_retry_due_later_anyway_is_left_alone(self) -> None:
        row = ALL["grace"]()  # next retry tomorrow
        assert transitions.hold_renewals(row, until=NOW + timedelta(hours=1)) is False
        assert row.next_renewal_at == NOW + timedelta(days=1)

    def test_no_retry_left_holds_nothing(self) -> None:
        row = subscription(SubscriptionStatus.GRACE, renewal_attempts=4, next_renewal_at=None)
        assert transitions.hold_renewals(row, until=NOW + timedelta(hours=24)) is False
        assert row.next_renewal_at is None, "no extra retry is made up"

    def test_a_grace_never_tried_is_held_and_released_back_to_the_period_end_rule(self) -> None:
        row = subscription(SubscriptionStatus.GRACE, renewal_attempts=0, next_renewal_at=None)
        until = NOW + timedelta(hours=24)
        assert transitions.hold_renewals(row, until=until) is True
        transitions.release_renewals(row, held_until=until, resume_at=None)
        assert row.next_renewal_at is None

    def test_a_schedule_changed_since_the_hold_is_not_put_back(self) -> None:
        row = IN_DUNNING["active, in dunning"]()
        until = NOW + timedelta(hours=24)
        transitions.hold_renewals(row, until=until)
        row.next_renewal_at = None  # a renewal paid meanwhile cleared the dunning

        transitions.release_renewals(row, held_until=until, resume_at=NOW)

        assert row.next_renewal_at is None


def test_only_a_renewal_that_saves_a_card_is_paid_at_a_checkout() -> None:
    assert transitions.renewal_at_checkout(Payment(purpose="renewal", save_payment_method=True))
    assert not transitions.renewal_at_checkout(
        Payment(purpose="renewal", save_payment_method=False)
    )
    assert not transitions.renewal_at_checkout(
        Payment(purpose="card_update", save_payment_method=True)
    )
