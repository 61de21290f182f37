"""Every subscription transition as a table: (state, action) → (state, fields set, events), and
the (state, action) pairs that are refused with the error the API answers with. Pure: the rows
are built in memory, no database."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from billing_api.models import Payment, Plan, Subscription, SubscriptionStatus
from billing_api.periods import add_months
from billing_api.subscriptions import transitions
from billing_api.subscriptions.transitions import (
    PlanChangeNotAllowed,
    SubscriptionNotCancelable,
    SubscriptionNotPausable,
    SubscriptionNotResumable,
    SubscriptionTransitionNotAllowed,
)
from shared import events
from shared.errors import AppError
from shared.money import Money

NOW = datetime(2026, 5, 20, 12, 0, tzinfo=UTC)
START = datetime(2026, 4, 25, 12, 0, tzinfo=UTC)  # the running period of an active subscription
END = add_months(START, 1)  # five days after NOW
GRACE_START = datetime(2026, 4, 15, 12, 0, tzinfo=UTC)  # the period a subscription in grace ended
GRACE_END = add_months(GRACE_START, 1)
DUNNING_STARTED = GRACE_END - timedelta(days=1)
OFFSETS = (timedelta(hours=1), timedelta(days=1), timedelta(days=2))
PAUSE_RESUMES = add_months(END, 2)  # a two-month pause asked for from the period end
# A paused subscription: its last paid period ended on 10 April, paused for two months.
PAID_START = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
PAID_END = add_months(PAID_START, 1)
PAUSED_UNTIL = add_months(PAID_END, 2)  # 10 June, three weeks after NOW


def plan(code: str, price: int) -> Plan:
    return Plan(
        id=uuid4(),
        code=code,
        name=code.title(),
        price_amount=price,
        currency="RUB",
        period_unit="month",
        period_days=None,
        grace_days=3,
        trial_days=7,
    )


MONTHLY = plan("monthly", 30000)
PREMIUM = plan("premium", 60000)
BASIC = plan("basic", 10000)


def payment(purpose: str, *, bought: Plan = MONTHLY, card: str | None = None) -> Payment:
    return Payment(
        id=uuid4(),
        purpose=purpose,
        plan_id=bought.id,
        amount=0 if purpose == "trial" else bought.price_amount,
        currency="RUB",
        months=1,
        payment_method_ref=card,
        created_at=NOW - timedelta(hours=1),
    )


CHECKOUT = payment("subscription", card="card-2")
TRIAL = payment("trial", card="card-2")
RENEWAL = payment("renewal")
RENEWAL_ONTO_BASIC = payment("renewal", bought=BASIC)
UPGRADE = payment("upgrade", bought=PREMIUM)
PAID_BEFORE = uuid4()  # the payment that bought an active subscription's running period
USER = uuid4()

# --- the states -----------------------------------------------------------------------------


def subscription(status: SubscriptionStatus, **fields: Any) -> Subscription:
    values: dict[str, Any] = {
        "id": UUID(int=1),
        "user_id": USER,
        "email": "viewer@example.com",
        "locale": "ru",
        "plan_id": MONTHLY.id,
        "status": status,
        "months": 1,
        "current_period_start": START,
        "current_period_end": END,
        "auto_renew": True,
        "cancel_at_period_end": False,
        "payment_method_ref": "card-1",
        "latest_payment_id": PAID_BEFORE,
        "canceled_at": None,
        "next_renewal_at": None,
        "renewal_attempts": 0,
        "dunning_started_at": None,
        "grace_until": None,
        "reminded_for": None,
        "trial": False,
        "trial_end": None,
        "pending_plan_id": None,
        "pause_starts_at": None,
        "pause_resumes_at": None,
    }
    return Subscription(**(values | fields))


WAITING = {
    "current_period_start": None,
    "current_period_end": None,
    "payment_method_ref": None,
    "latest_payment_id": CHECKOUT.id,
}
STATES: dict[str, Callable[[], Subscription]] = {
    "pending": lambda: subscription(SubscriptionStatus.PENDING, **WAITING),
    "abandoned": lambda: subscription(SubscriptionStatus.ABANDONED, **WAITING),
    "active": lambda: subscription(SubscriptionStatus.ACTIVE),
    # cancelled at its period end, and told it ends soon
    "active, ending": lambda: subscription(
        SubscriptionStatus.ACTIVE, cancel_at_period_end=True, reminded_for=END
    ),
    "active, auto-renew off": lambda: subscription(SubscriptionStatus.ACTIVE, auto_renew=False),
    "active, downgrade scheduled": lambda: subscription(
        SubscriptionStatus.ACTIVE, pending_plan_id=BASIC.id
    ),
    # two renewals declined so far, the third retry due tomorrow
    "grace": lambda: subscription(
        SubscriptionStatus.GRACE,
        current_period_start=GRACE_START,
        current_period_end=GRACE_END,
        grace_until=GRACE_END + timedelta(days=3),
        renewal_attempts=2,
        dunning_started_at=DUNNING_STARTED,
        next_renewal_at=NOW + timedelta(days=1),
    ),
    "active, renewal declined": lambda: subscription(
        SubscriptionStatus.ACTIVE,
        renewal_attempts=1,
        dunning_started_at=NOW - timedelta(minutes=30),
        next_renewal_at=NOW + timedelta(minutes=30),
    ),
    "active, no card": lambda: subscription(SubscriptionStatus.ACTIVE, payment_method_ref=None),
    "active, trial": lambda: subscription(SubscriptionStatus.ACTIVE, trial=True, trial_end=END),
    "active, pause scheduled": lambda: subscription(
        SubscriptionStatus.ACTIVE, pause_starts_at=END, pause_resumes_at=PAUSE_RESUMES
    ),
    "paused": lambda: subscription(
        SubscriptionStatus.PAUSED,
        current_period_start=PAID_START,
        current_period_end=PAID_END,
        pause_starts_at=PAID_END,
        pause_resumes_at=PAUSED_UNTIL,
    ),
    # the subscriber ended the pause now; its renewal is being charged
    "paused, resumed now": lambda: subscription(
        SubscriptionStatus.PAUSED,
        current_period_start=PAID_START,
        current_period_end=PAID_END,
        pause_starts_at=PAID_END,
        pause_resumes_at=NOW,
    ),
    "expired": lambda: subscription(
        SubscriptionStatus.EXPIRED, current_period_start=GRACE_START, current_period_end=GRACE_END
    ),
    "canceled": lambda: subscription(
        SubscriptionStatus.CANCELED, canceled_at=NOW - timedelta(days=1), auto_renew=False
    ),
}

# --- the actions ----------------------------------------------------------------------------


ACTION_URL = "https://gateway.example/sandbox/actions/pi_sb_1"


def _after(moment: datetime | None) -> datetime:
    return (moment or NOW) + timedelta(hours=1)


ACTIONS: dict[str, Callable[[Subscription], transitions.Events]] = {
    "pay checkout": lambda s: transitions.activate(s, MONTHLY, CHECKOUT, now=NOW),
    "start trial": lambda s: transitions.activate(s, MONTHLY, TRIAL, now=NOW),
    "pay renewal": lambda s: transitions.renew(s, MONTHLY, RENEWAL),
    "pay renewal onto basic": lambda s: transitions.renew(s, BASIC, RENEWAL_ONTO_BASIC),
    "pay upgrade": lambda s: transitions.upgrade(s, MONTHLY, PREMIUM, UPGRADE, credit=500, now=NOW),
    "decline renewal": lambda s: transitions.record_failed_renewal(
        s, MONTHLY, RENEWAL, reason="card declined", retry_offsets=OFFSETS, now=NOW
    ),
    "renewal awaits confirmation": lambda s: transitions.await_confirmation(
        s, MONTHLY, RENEWAL, action_url=ACTION_URL, retry_offsets=OFFSETS, now=NOW
    ),
    "end period": lambda s: transitions.end_period(s, MONTHLY, now=_after(s.current_period_end)),
    "end grace": lambda s: transitions.end_grace(s, MONTHLY, now=_after(s.grace_until)),
    "remind": lambda s: transitions.remind_of_end(s, MONTHLY),
    "cancel at period end": lambda s: transitions.cancel(s, MONTHLY, now=NOW, at_period_end=True),
    "cancel now": lambda s: transitions.cancel(s, MONTHLY, now=NOW, at_period_end=False),
    "refund": lambda s: transitions.revoke(
        s, MONTHLY, now=NOW, refund_amount=Money(amount=100, currency="RUB")
    ),
    "dispute": lambda s: transitions.revoke(s, MONTHLY, now=NOW, refund_amount=None),
    "resume": lambda s: transitions.resume(s, now=NOW),
    "downgrade": lambda s: transitions.schedule_downgrade(s, MONTHLY, BASIC),
    "take back downgrade": lambda s: transitions.take_back_downgrade(s),
    "checkout expires": lambda s: transitions.abandon(s, CHECKOUT),
    "pause": lambda s: transitions.schedule_pause(s, MONTHLY, months=2, now=NOW),
    "take back pause": lambda s: transitions.take_back_pause(s, MONTHLY, now=NOW),
    "resume now": lambda s: transitions.resume_now(s, MONTHLY, now=NOW),
    "end pause": lambda s: transitions.end_pause(s, MONTHLY, now=_after(s.pause_resumes_at)),
    "decline renewal for good": lambda s: transitions.record_hard_decline(
        s, MONTHLY, RENEWAL, reason="card lost", update_url="https://example.com/a", now=NOW
    ),
}

FIELDS = (
    "status",
    "plan_id",
    "pending_plan_id",
    "current_period_start",
    "current_period_end",
    "trial_end",
    "renewal_attempts",
    "dunning_started_at",
    "next_renewal_at",
    "grace_until",
    "reminded_for",
    "canceled_at",
    "auto_renew",
    "cancel_at_period_end",
    "latest_payment_id",
    "payment_method_ref",
    "pause_starts_at",
    "pause_resumes_at",
)


def fields_of(row: Subscription) -> dict[str, Any]:
    return {name: getattr(row, name) for name in FIELDS}


ACTIVE, GRACE = SubscriptionStatus.ACTIVE, SubscriptionStatus.GRACE
EXPIRED, CANCELED = SubscriptionStatus.EXPIRED, SubscriptionStatus.CANCELED
DUNNING_CLEARED = {
    "renewal_attempts": 0,
    "dunning_started_at": None,
    "next_renewal_at": None,
    "grace_until": None,
}
ENDED_NOW = {"status": CANCELED, "canceled_at": NOW, "auto_renew": False}
PAUSED = SubscriptionStatus.PAUSED
NO_PAUSE = {"pause_starts_at": None, "pause_resumes_at": None}

# (state, action) → (the fields that changed, the events published)
ALLOWED: list[tuple[str, str, dict[str, Any], list[str]]] = [
    (
        "pending",
        "pay checkout",
        {
            "status": ACTIVE,
            "current_period_start": NOW,
            "current_period_end": add_months(NOW, 1),
            "payment_method_ref": "card-2",
        },
        ["subscription.activated"],
    ),
    (
        "abandoned",
        "pay checkout",
        {
            "status": ACTIVE,
            "current_period_start": NOW,
            "current_period_end": add_months(NOW, 1),
            "payment_method_ref": "card-2",
        },
        ["subscription.activated"],
    ),
    (
        "pending",
        "start trial",
        {
            "status": ACTIVE,
            "current_period_start": NOW,
            "current_period_end": NOW + timedelta(days=7),
            "trial_end": NOW + timedelta(days=7),
            "latest_payment_id": TRIAL.id,
            "payment_method_ref": "card-2",
        },
        ["subscription.activated"],
    ),
    (
        "active",
        "pay renewal",
        {
            "current_period_start": END,
            "current_period_end": add_months(END, 1),
            "latest_payment_id": RENEWAL.id,
        },
        ["subscription.renewed"],
    ),
    (
        "grace",
        "pay renewal",
        {
            "status": ACTIVE,
            "current_period_start": GRACE_END,
            "current_period_end": add_months(GRACE_END, 1),
            **DUNNING_CLEARED,
            "latest_payment_id": RENEWAL.id,
        },
        ["subscription.renewed"],
    ),
    (
        "active, downgrade scheduled",
        "pay renewal onto basic",
        {
            "plan_id": BASIC.id,
            "pending_plan_id": None,
            "current_period_start": END,
            "current_period_end": add_months(END, 1),
            "latest_payment_id": RENEWAL_ONTO_BASIC.id,
        },
        ["subscription.renewed"],
    ),
    (
        "active",
        "pay upgrade",
        {
            "plan_id": PREMIUM.id,
            "current_period_start": NOW,
            "current_period_end": add_months(NOW, 1),
            "latest_payment_id": UPGRADE.id,
        },
        ["subscription.plan_changed"],
    ),
    (
        "active, downgrade scheduled",
        "pay upgrade",
        {
            "plan_id": PREMIUM.id,
            "pending_plan_id": None,
            "current_period_start": NOW,
            "current_period_end": add_months(NOW, 1),
            "latest_payment_id": UPGRADE.id,
        },
        ["subscription.plan_changed"],
    ),
    (  # a new period: the reminder of the old one's end no longer holds
        "active, ending",
        "pay upgrade",
        {
            "plan_id": PREMIUM.id,
            "current_period_start": NOW,
            "current_period_end": add_months(NOW, 1),
            "reminded_for": None,
            "latest_payment_id": UPGRADE.id,
        },
        ["subscription.plan_changed"],
    ),
    (
        "grace",
        "pay upgrade",
        {
            "status": ACTIVE,
            "plan_id": PREMIUM.id,
            "current_period_start": NOW,
            "current_period_end": add_months(NOW, 1),
            **DUNNING_CLEARED,
            "latest_payment_id": UPGRADE.id,
        },
        ["subscription.plan_changed"],
    ),
    (
        "active",
        "decline renewal",
        {
            "renewal_attempts": 1,
            "dunning_started_at": NOW,
            "next_renewal_at": NOW + OFFSETS[0],
        },
        ["subscription.renewal_failed"],
    ),
    (  # the third failure: its retry counts from the first
        "grace",
        "decline renewal",
        {"renewal_attempts": 3, "next_renewal_at": DUNNING_STARTED + OFFSETS[2]},
        ["subscription.renewal_failed"],
    ),
    (  # the dunning step is taken as for a decline
        "active",
        "renewal awaits confirmation",
        {
            "renewal_attempts": 1,
            "dunning_started_at": NOW,
            "next_renewal_at": NOW + OFFSETS[0],
        },
        ["subscription.payment_action_required"],
    ),
    (
        "grace",
        "renewal awaits confirmation",
        {"renewal_attempts": 3, "next_renewal_at": DUNNING_STARTED + OFFSETS[2]},
        ["subscription.payment_action_required"],
    ),
    (
        "active",
        "end period",
        {"status": GRACE, "grace_until": END + timedelta(days=3)},
        ["subscription.grace_started"],
    ),
    ("active, ending", "end period", {"status": EXPIRED}, ["subscription.expired"]),
    ("active, auto-renew off", "end period", {"status": EXPIRED}, ["subscription.expired"]),
    (
        "grace",
        "end grace",
        {"status": EXPIRED, "next_renewal_at": None},
        ["subscription.expired"],
    ),
    ("active, auto-renew off", "remind", {"reminded_for": END}, ["subscription.expiring"]),
    (
        "active",
        "cancel at period end",
        {"cancel_at_period_end": True},
        ["subscription.canceled"],
    ),
    (  # in grace there is no period left to run out: it ends now
        "grace",
        "cancel at period end",
        {**ENDED_NOW, "next_renewal_at": None},
        ["subscription.canceled"],
    ),
    ("active", "cancel now", ENDED_NOW, ["subscription.canceled"]),
    ("grace", "cancel now", {**ENDED_NOW, "next_renewal_at": None}, ["subscription.canceled"]),
    ("active", "refund", ENDED_NOW, ["subscription.canceled"]),
    ("grace", "refund", {**ENDED_NOW, "next_renewal_at": None}, ["subscription.canceled"]),
    ("pending", "refund", ENDED_NOW, ["subscription.canceled"]),
    ("active", "dispute", ENDED_NOW, ["subscription.canceled"]),
    (
        "active, ending",
        "resume",
        {"cancel_at_period_end": False, "reminded_for": None},
        [],
    ),
    ("active", "downgrade", {"pending_plan_id": BASIC.id}, []),
    ("active, downgrade scheduled", "take back downgrade", {"pending_plan_id": None}, []),
    ("pending", "checkout expires", {"status": SubscriptionStatus.ABANDONED}, []),
    # --- pause: asked for, begun at the period end, renewed at its end or ended early ------
    (
        "active",
        "pause",
        {"pause_starts_at": END, "pause_resumes_at": PAUSE_RESUMES},
        ["subscription.paused"],
    ),
    (  # the downgrade still switches, at the renewal after the pause
        "active, downgrade scheduled",
        "pause",
        {"pause_starts_at": END, "pause_resumes_at": PAUSE_RESUMES},
        ["subscription.paused"],
    ),
    ("active, pause scheduled", "end period", {"status": PAUSED}, []),
    ("active, pause scheduled", "take back pause", NO_PAUSE, ["subscription.resumed"]),
    (
        "active, pause scheduled",
        "cancel at period end",
        {"cancel_at_period_end": True, **NO_PAUSE},
        ["subscription.canceled"],
    ),
    ("active, pause scheduled", "cancel now", {**ENDED_NOW, **NO_PAUSE}, ["subscription.canceled"]),
    ("active, pause scheduled", "refund", {**ENDED_NOW, **NO_PAUSE}, ["subscription.canceled"]),
    (  # renewed at the pause's end: the paused months are not paid for
        "paused",
        "pay renewal",
        {
            "status": ACTIVE,
            "current_period_start": PAUSED_UNTIL,
            "current_period_end": add_months(PAUSED_UNTIL, 1),
            "latest_payment_id": RENEWAL.id,
            **NO_PAUSE,
        },
        ["subscription.renewed"],
    ),
    (
        "paused",
        "decline renewal",
        {"renewal_attempts": 1, "dunning_started_at": NOW, "next_renewal_at": NOW + OFFSETS[0]},
        ["subscription.renewal_failed"],
    ),
    (  # no retry; paused to its end, then grace (end pause)
        "paused",
        "decline renewal for good",
        {"renewal_attempts": 1, "dunning_started_at": NOW},
        ["subscription.payment_method_required"],
    ),
    ("paused", "resume now", {"pause_resumes_at": NOW}, ["subscription.resumed"]),
    ("paused, resumed now", "resume now", {}, []),  # asked again: the same renewal is charged
    (  # ended early: the new period runs from the moment the subscriber resumed
        "paused, resumed now",
        "pay renewal",
        {
            "status": ACTIVE,
            "current_period_start": NOW,
            "current_period_end": add_months(NOW, 1),
            "latest_payment_id": RENEWAL.id,
            **NO_PAUSE,
        },
        ["subscription.renewed"],
    ),
    (  # unpaid at its end: grace as after a period end, the pause counting as that period
        "paused",
        "end pause",
        {
            "status": GRACE,
            "current_period_start": PAID_END,
            "current_period_end": PAUSED_UNTIL,
            "grace_until": PAUSED_UNTIL + timedelta(days=3),
            **NO_PAUSE,
        },
        ["subscription.grace_started"],
    ),
    ("paused", "cancel now", {**ENDED_NOW, **NO_PAUSE}, ["subscription.canceled"]),
    (  # nothing to keep access to: a paused subscription always ends now
        "paused",
        "cancel at period end",
        {**ENDED_NOW, **NO_PAUSE},
        ["subscription.canceled"],
    ),
    ("paused", "refund", {**ENDED_NOW, **NO_PAUSE}, ["subscription.canceled"]),
    ("paused", "dispute", {**ENDED_NOW, **NO_PAUSE}, ["subscription.canceled"]),
]

# (state, action) → the error it is refused with (every one a 409)
REFUSED: list[tuple[str, str, type[AppError]]] = [
    *(
        (state, "pay checkout", SubscriptionTransitionNotAllowed)
        for state in ("active", "grace", "expired", "canceled")
    ),
    *(
        (state, "pay renewal", SubscriptionTransitionNotAllowed)
        for state in ("pending", "abandoned", "active, ending", "active, auto-renew off")
    ),
    *(
        (state, "pay renewal", SubscriptionTransitionNotAllowed)
        for state in ("expired", "canceled")
    ),
    *(
        (state, "pay upgrade", SubscriptionTransitionNotAllowed)
        for state in ("pending", "abandoned", "expired", "canceled")
    ),
    *(
        (state, "decline renewal", SubscriptionTransitionNotAllowed)
        for state in ("pending", "active, ending", "expired", "canceled")
    ),
    *(
        (state, "renewal awaits confirmation", SubscriptionTransitionNotAllowed)
        for state in ("pending", "active, ending", "active, auto-renew off", "expired", "canceled")
    ),
    *(
        (state, "end period", SubscriptionTransitionNotAllowed)
        for state in ("pending", "grace", "expired", "canceled")
    ),
    *(
        (state, "end grace", SubscriptionTransitionNotAllowed)
        for state in ("active", "expired", "canceled")
    ),
    *(
        (state, "remind", SubscriptionTransitionNotAllowed)
        for state in ("active", "grace", "canceled")
    ),
    *(
        (state, action, SubscriptionNotCancelable)
        for state in ("pending", "abandoned", "expired", "canceled")
        for action in ("cancel at period end", "cancel now")
    ),
    *(
        (state, "refund", SubscriptionTransitionNotAllowed)
        for state in ("abandoned", "expired", "canceled")
    ),
    *(
        (state, "resume", SubscriptionNotResumable)
        for state in ("active", "active, auto-renew off", "grace", "canceled")
    ),
    *(
        (state, "downgrade", PlanChangeNotAllowed)
        for state in ("active, ending", "grace", "pending", "canceled")
    ),
    ("active", "take back downgrade", PlanChangeNotAllowed),
    *(
        (state, "checkout expires", SubscriptionTransitionNotAllowed)
        for state in ("abandoned", "active")
    ),
    # --- pause ------------------------------------------------------------------------------
    *(
        (state, "pause", SubscriptionNotPausable)
        for state in (
            "active, pause scheduled",  # one pause at a time
            "paused",
            "active, ending",
            "active, auto-renew off",
            "active, renewal declined",
            "active, no card",
            "active, trial",
            "grace",
            "pending",
            "expired",
            "canceled",
        )
    ),
    *(
        (state, action, SubscriptionNotResumable)
        for state in ("active", "grace", "paused")
        for action in ("take back pause",)
    ),
    *(
        (state, "resume now", SubscriptionNotResumable)
        for state in ("active", "active, pause scheduled", "grace", "canceled")
    ),
    *(
        (state, "resume", SubscriptionNotResumable)
        for state in ("active, pause scheduled", "paused")
    ),
    *(
        (state, "end pause", SubscriptionTransitionNotAllowed)
        for state in ("active", "active, pause scheduled", "grace", "expired")
    ),
    *(  # nothing is renewed at a period end the subscription pauses at
        ("active, pause scheduled", action, SubscriptionTransitionNotAllowed)
        for action in ("pay renewal", "decline renewal", "decline renewal for good")
    ),
    *(
        ("paused", action, SubscriptionTransitionNotAllowed)
        for action in ("pay checkout", "pay upgrade", "end period", "end grace", "remind")
    ),
    *(
        (state, "downgrade", PlanChangeNotAllowed)
        for state in ("paused", "active, pause scheduled")
    ),
]


class TestAllowed:
    @pytest.mark.parametrize(
        ("state", "action", "changed", "published"),
        ALLOWED,
        ids=[f"{state} + {action}" for state, action, _, _ in ALLOWED],
    )
    def test_sets_every_field_that_goes_with_it_and_says_so(
        self, state: str, action: str, changed: dict[str, Any], published: list[str]
    ) -> None:
        row = STATES[state]()
        before = fields_of(row)

        announced = ACTIONS[action](row)

        after = fields_of(row)
        assert {name: after[name] for name in FIELDS if after[name] != before[name]} == changed
        assert [event.event_type for event in announced] == published


class TestRefused:
    @pytest.mark.parametrize(
        ("state", "action", "error"),
        REFUSED,
        ids=[f"{state} + {action}" for state, action, _ in REFUSED],
    )
    def test_is_refused_with_a_409_and_changes_nothing(
        self, state: str, action: str, error: type[AppError]
    ) -> None:
        row = STATES[state]()
        before = fields_of(row)

        with pytest.raises(error) as refused:
            ACTIONS[action](row)

        assert refused.value.status_code == 409
        assert fields_of(row) == before


class TestEvents:
    def test_cancel_at_period_end_keeps_access_until_the_period_ends(self) -> None:
        (event,) = transitions.cancel(STATES["active"](), MONTHLY, now=NOW, at_period_end=True)
        assert isinstance(event, events.SubscriptionCanceled)
        assert (event.canceled_at, event.access_until, event.refund_amount) == (NOW, END, None)

    def test_a_refund_ends_access_now_and_names_the_money(self) -> None:
        refund = Money(amount=100, currency="RUB")
        (event,) = transitions.revoke(STATES["active"](), MONTHLY, now=NOW, refund_amount=refund)
        assert isinstance(event, events.SubscriptionCanceled)
        assert (event.access_until, event.refund_amount) == (NOW, refund)

    def test_every_event_names_the_subscription_its_owner_and_its_plan(self) -> None:
        row = STATES["grace"]()
        (event,) = transitions.upgrade(row, MONTHLY, PREMIUM, UPGRADE, credit=500, now=NOW)
        assert isinstance(event, events.SubscriptionPlanChanged)
        assert (event.subscription_id, event.user_id, event.email) == (
            row.id,
            USER,
            "viewer@example.com",
        )
        assert event.plan == events.PlanSummary(plan_id=PREMIUM.id, code="premium", name="Premium")
        assert event.previous_plan.plan_id == MONTHLY.id
        assert (event.amount.amount, event.credit.amount) == (60000, 500)
        assert event.current_period_end == add_months(NOW, 1)

    def test_grace_asks_for_the_price_of_the_periods_it_renews(self) -> None:
        row = subscription(SubscriptionStatus.ACTIVE, months=3)
        (event,) = transitions.end_period(row, MONTHLY, now=END)
        assert isinstance(event, events.SubscriptionGraceStarted)
        assert event.amount_due == Money(amount=90000, currency="RUB")

    def test_the_last_declined_retry_schedules_no_other(self) -> None:
        row = subscription(
            SubscriptionStatus.GRACE, renewal_attempts=3, dunning_started_at=DUNNING_STARTED
        )
        (event,) = transitions.record_failed_renewal(
            row, MONTHLY, RENEWAL, reason="card declined", retry_offsets=OFFSETS, now=NOW
        )
        assert isinstance(event, events.SubscriptionRenewalFailed)
        assert (row.next_renewal_at, event.next_attempt_at, event.reason) == (
            None,
            None,
            "card declined",
        )

    def test_a_renewal_awaiting_confirmation_gives_the_page_and_the_next_step_as_deadline(
        self,
    ) -> None:
        row = STATES["active"]()
        (event,) = transitions.await_confirmation(
            row, MONTHLY, RENEWAL, action_url=ACTION_URL, retry_offsets=OFFSETS, now=NOW
        )
        assert isinstance(event, events.SubscriptionPaymentActionRequired)
        assert (event.payment_id, event.action_url, event.confirm_by) == (
            RENEWAL.id,
            ACTION_URL,
            NOW + OFFSETS[0],
        )
        assert event.amount == Money(amount=30000, currency="RUB")


class TestChecks:
    def test_a_checkout_expiring_abandons_only_the_subscription_waiting_for_it(self) -> None:
        row = STATES["pending"]()
        with pytest.raises(SubscriptionTransitionNotAllowed):
            transitions.abandon(row, payment("subscription"))
        assert row.status == SubscriptionStatus.PENDING

    def test_a_plan_in_another_currency_is_refused(self) -> None:
        euro = plan("euro", 1000)
        euro.currency = "EUR"
        with pytest.raises(PlanChangeNotAllowed, match="sold in EUR"):
            transitions.check_plan_change(STATES["active"](), MONTHLY, euro)

    def test_a_period_that_has_not_ended_does_not_end(self) -> None:
        with pytest.raises(SubscriptionTransitionNotAllowed):
            transitions.end_period(STATES["active"](), MONTHLY, now=NOW)

    def test_resume_after_the_period_ended_is_refused(self) -> None:
        with pytest.raises(SubscriptionNotResumable):
            transitions.resume(STATES["active, ending"](), now=END)


class TestPause:
    def test_a_pause_is_one_to_three_calendar_months_from_the_period_end(self) -> None:
        row = STATES["active"]()
        (event,) = transitions.schedule_pause(row, MONTHLY, months=3, now=NOW)
        assert isinstance(event, events.SubscriptionPaused)
        assert (event.starts_at, event.resumes_at) == (END, add_months(END, 3))
        for months in (0, 4):
            with pytest.raises(SubscriptionNotPausable):
                transitions.schedule_pause(STATES["active"](), MONTHLY, months=months, now=NOW)

    def test_a_period_that_has_ended_cannot_be_paused(self) -> None:
        with pytest.raises(SubscriptionNotPausable):
            transitions.schedule_pause(STATES["active"](), MONTHLY, months=1, now=END)

    def test_a_pause_that_has_not_ended_does_not_end(self) -> None:
        with pytest.raises(SubscriptionTransitionNotAllowed):
            transitions.end_pause(STATES["paused"](), MONTHLY, now=NOW)

    def test_a_subscription_pausing_at_its_period_end_does_not_renew_then(self) -> None:
        assert not transitions.renews(STATES["active, pause scheduled"]())
        assert transitions.renews(STATES["paused"]())

    def test_taking_a_pause_back_says_the_period_runs_on(self) -> None:
        row = STATES["active, pause scheduled"]()
        (event,) = transitions.take_back_pause(row, MONTHLY, now=NOW)
        assert isinstance(event, events.SubscriptionResumed)
        assert (event.resumed_at, event.current_period_end) == (NOW, END)

    def test_ending_a_pause_early_leaves_the_new_end_to_the_renewal(self) -> None:
        (event,) = transitions.resume_now(STATES["paused"](), MONTHLY, now=NOW)
        assert isinstance(event, events.SubscriptionResumed)
        assert (event.resumed_at, event.current_period_end) == (NOW, None)

    def test_a_plan_change_while_a_pause_is_scheduled_is_refused(self) -> None:
        with pytest.raises(PlanChangeNotAllowed, match="pauses"):
            transitions.check_plan_change(STATES["active, pause scheduled"](), MONTHLY, PREMIUM)

    def test_a_card_declined_for_good_in_a_pause_asks_for_a_card_until_grace_after_it(
        self,
    ) -> None:
        row = STATES["paused, resumed now"]()
        (notice,) = transitions.record_hard_decline(
            row, MONTHLY, RENEWAL, reason="card lost", update_url="https://example.com/a", now=NOW
        )
        assert isinstance(notice, events.SubscriptionPaymentMethodRequired)
        assert notice.grace_until == NOW + timedelta(days=3)
        assert (row.status, row.next_renewal_at) == (SubscriptionStatus.PAUSED, None)
