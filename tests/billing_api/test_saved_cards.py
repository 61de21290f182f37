"""The saved card: shown on the subscription, declined for good (no retries, grace at once, a
new card asked for), and reminded of before it expires ahead of the next renewal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from billing_api import jobs
from billing_api.activation import service as activation
from billing_api.config import BillingSettings
from billing_api.lifecycle import renewal_claims, renewals
from billing_api.periods import add_months
from shared import clock
from shared.broker import Broker
from tests.billing_api.conftest import Suite, User
from tests.billing_api.test_lifecycle import end_of, latest_grants, off_session_charges, run_jobs
from tests.billing_api.test_renewals import context
from tests.shared.messaging import Probe

LOST_LATER = "4000099900000013"  # sandbox-only: saves fine, later charges declined lost_card
EXPIRED_LATER = "4000099900000021"  # sandbox-only: saves fine, later charges expired_card
SOFT_LATER = "4000000000000341"  # saves fine, later charges declined card_declined (soft)


async def subscribed(
    suite: Suite, user: User, card: str = "4242424242424242", **body: Any
) -> dict[str, Any]:
    """A premium subscription paid at checkout with ``card`` (and its ``exp_month`` /
    ``exp_year`` if given)."""
    expiry = {key: body.pop(key) for key in ("exp_month", "exp_year") if key in body}
    plan = await suite.plan("premium")
    created = (
        await user.post("/api/v1/subscriptions", json={"plan_id": plan["id"], **body})
    ).json()
    session_id = created["latest_payment"]["checkout_url"].rsplit("/", 1)[1]
    paid = await suite.gateway_http.post(
        f"/sandbox/checkout/{session_id}/pay", json={"card_number": card, **expiry}
    )
    assert paid.status_code == 200, paid.text
    return await user.wait_for_subscription(created["id"], "active")


def month_after(moment: datetime) -> tuple[int, int]:
    """(month, year) of the month after ``moment``'s."""
    return (moment.month % 12 + 1, moment.year + moment.month // 12)


def expiry_end(month: int, year: int) -> datetime:
    return datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)


@pytest.fixture
async def card_notices(suite: Suite, broker: Broker) -> AsyncIterator[Suite]:
    """The suite with ``payment_method.*`` notices seen too (its probe listens to
    ``subscription.*``)."""
    probe = await Probe.bind_many(broker, ("payment_method.*",))
    original = suite.probe
    suite.probe = _Both(original, probe)  # type: ignore[assignment]
    yield suite
    suite.probe = original
    await probe.close()


class _Both:
    def __init__(self, *probes: Probe) -> None:
        self.probes = probes

    async def drain(self) -> list[Any]:
        return [event for probe in self.probes for event in await probe.drain()]


async def notices(suite: Suite, event_type: str, subscription: dict[str, Any]) -> list[Any]:
    return [
        e.data
        for e in await suite.events(event_type)
        if str(e.data.subscription_id) == subscription["id"]
    ]


class TestSavedCardShown:
    async def test_the_subscription_shows_the_card_paid_with_at_checkout(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()

        subscription = await subscribed(suite, user, "5555555555554444", exp_month=8, exp_year=2031)

        assert subscription["payment_method"] == {
            "brand": "mastercard",
            "last4": "4444",
            "exp_month": 8,
            "exp_year": 2031,
        }

    async def test_a_renewal_charged_to_a_reissued_card_shows_the_new_card(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        subscription = await subscribed(suite, user, exp_month=8, exp_year=2031)
        # The bank reissued the card: the provider's saved method now has another number's
        # last four and a new expiry (as Stripe's card updater does).
        async with suite.gateway.state.resources.engine.begin() as conn:
            await conn.exec_driver_sql(
                "UPDATE sandbox_payment_method"
                " SET card_last4 = '1881', exp_month = 2, exp_year = 2033"
            )

        await run_jobs(suite, end_of(subscription) - timedelta(minutes=30))

        renewed = await user.subscription(subscription["id"])
        assert end_of(renewed) == add_months(end_of(subscription), 1)
        assert renewed["payment_method"] == {
            "brand": "visa",
            "last4": "1881",
            "exp_month": 2,
            "exp_year": 2033,
        }

    async def test_a_subscription_not_paid_yet_has_no_card(self, suite: Suite) -> None:
        user = suite.as_user()
        plan = await suite.plan("premium")
        created = (
            await user.post(
                "/api/v1/subscriptions", json={"plan_id": plan["id"], "payment_method": "card"}
            )
        ).json()

        assert created["payment_method"] is None


class TestHardDecline:
    async def test_a_renewal_declined_for_good_is_not_retried_and_goes_to_grace_at_once(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        subscription = await subscribed(suite, user, LOST_LATER)
        end = end_of(subscription)
        first_try = end - timedelta(minutes=30)
        # The renewal job's own answer from the gateway settles it: billing's consumer of the
        # gateway's events is held back meanwhile.
        assert suite.consumer is not None
        await suite.consumer.stop()

        await run_jobs(suite, first_try)

        in_grace = await user.subscription(subscription["id"])
        assert in_grace["status"] == "grace"
        assert end_of(in_grace) == end, "the paid period is not cut short"
        grants = await latest_grants(suite, user)
        assert grants[0].valid_until == end + timedelta(days=2), "access runs on through grace"
        await suite.consumer.start()  # the gateway's event now arrives: it changes nothing
        for offset in (timedelta(hours=1), timedelta(days=1), timedelta(days=2)):
            await run_jobs(suite, first_try + offset)
        assert await off_session_charges(suite) == 1, "no retry of a card that cannot pass"
        await run_jobs(suite, end + timedelta(days=2))
        assert (await user.subscription(subscription["id"]))["status"] == "expired"

        settings: BillingSettings = suite.billing.state.settings
        [required] = await notices(suite, "subscription.payment_method_required", subscription)
        assert required.reason == "Your card was declined."
        assert required.grace_until == end + timedelta(days=2)
        assert required.amount_due.amount == 59900
        assert required.update_url == f"{settings.account_url}?subscription_id={subscription['id']}"
        assert await notices(suite, "subscription.renewal_failed", subscription) == []
        assert await notices(suite, "subscription.grace_started", subscription) == []
        assert len(await notices(suite, "subscription.expired", subscription)) == 1

    async def test_the_gateways_event_of_a_hard_decline_puts_it_into_grace_once(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        subscription = await subscribed(suite, user, EXPIRED_LATER)
        end = end_of(subscription)
        at = end - timedelta(minutes=30)
        # Claimed and charged, never settled by the run (it died): the event settles it.
        with clock.frozen(at):
            claimed = await renewal_claims.claim_renewals(context(suite, at))
            answers = await renewals.charge_all(context(suite, at), claimed)
        assert [(a.status, a.hard_decline) for a in answers] == [("failed", True)]

        in_grace = await user.wait_for_subscription(subscription["id"], "grace")

        assert end_of(in_grace) == end
        [required] = await notices(suite, "subscription.payment_method_required", subscription)
        assert required.grace_until == end + timedelta(days=2)
        assert required.update_url == (
            f"{activation.DEFAULT_ACCOUNT_URL}?subscription_id={subscription['id']}"
        )
        # The run after the lease finds the payment settled and charges nothing again.
        await run_jobs(suite, at + timedelta(hours=1))
        await run_jobs(suite, end + timedelta(minutes=1))
        assert await off_session_charges(suite) == 1
        assert (await user.subscription(subscription["id"]))["status"] == "grace"
        assert len(await notices(suite, "subscription.payment_method_required", subscription)) == 1

    async def test_a_soft_decline_keeps_the_dunning_schedule(self, suite: Suite) -> None:
        user = suite.as_user()
        subscription = await subscribed(suite, user, SOFT_LATER)
        first_try = end_of(subscription) - timedelta(minutes=30)

        await run_jobs(suite, first_try)
        after_first = await user.subscription(subscription["id"])
        await run_jobs(suite, first_try + timedelta(hours=1))

        assert after_first["status"] == "active"
        assert await off_session_charges(suite) == 2, "retried an hour later"
        assert len(await notices(suite, "subscription.renewal_failed", subscription)) == 2
        assert await notices(suite, "subscription.payment_method_required", subscription) == []


@pytest.mark.usefixtures("card_notices")
class TestCardExpiryReminder:
    async def test_a_card_expiring_before_the_renewal_is_reminded_of_once(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        month, year = month_after(clock.now())
        subscription = await subscribed(suite, user, months=3, exp_month=month, exp_year=year)
        expires = expiry_end(month, year)
        notice_from = expires - timedelta(days=14)  # BILLING_CARD_EXPIRY_NOTICE_DAYS

        early = await run_jobs(suite, notice_from - timedelta(minutes=1))
        first = await run_jobs(suite, notice_from)
        again = await run_jobs(suite, notice_from + timedelta(days=1))

        assert (early["remind_card_expiring"], first["remind_card_expiring"]) == (0, 1)
        assert again["remind_card_expiring"] == 0
        settings: BillingSettings = suite.billing.state.settings
        [expiring] = await notices(suite, "payment_method.expiring", subscription)
        assert expiring.card.model_dump() == {
            "brand": "visa",
            "last4": "4242",
            "exp_month": month,
            "exp_year": year,
        }
        assert expiring.next_renewal_at == end_of(subscription)
        assert expiring.update_url == f"{settings.account_url}?subscription_id={subscription['id']}"

    async def test_a_card_good_past_the_renewal_is_not_reminded_of(self, suite: Suite) -> None:
        user = suite.as_user()
        subscription = await subscribed(suite, user)  # expires December, three years on

        done = await run_jobs(suite, end_of(subscription) - timedelta(hours=2))

        assert done["remind_card_expiring"] == 0
        assert await notices(suite, "payment_method.expiring", subscription) == []

    async def test_a_new_card_is_reminded_of_again(self, suite: Suite) -> None:
        user = suite.as_user()
        month, year = month_after(clock.now())
        subscription = await subscribed(suite, user, months=3, exp_month=month, exp_year=year)
        end = end_of(subscription)
        await run_jobs(suite, expiry_end(month, year) - timedelta(days=1))
        # Reissued before the renewal: a new expiry, one month after the renewal's.
        new_month, new_year = month_after(end)
        async with suite.gateway.state.resources.engine.begin() as conn:
            await conn.execute(
                sa.text("UPDATE sandbox_payment_method SET exp_month = :month, exp_year = :year"),
                {"month": new_month, "year": new_year},
            )
        await run_jobs(suite, end - timedelta(minutes=30))
        renewed = await user.subscription(subscription["id"])
        assert renewed["payment_method"]["exp_month"] == new_month

        done = await run_jobs(suite, expiry_end(new_month, new_year) - timedelta(days=1))

        assert done["remind_card_expiring"] == 1
        reminded = await notices(suite, "payment_method.expiring", subscription)
        assert [(n.card.exp_month, n.card.exp_year) for n in reminded] == [
            (month, year),
            (new_month, new_year),
        ]

    async def test_an_expired_card_is_reminded_of_at_once(self, suite: Suite) -> None:
        user = suite.as_user()
        month, year = month_after(clock.now())
        subscription = await subscribed(suite, user, months=3, exp_month=month, exp_year=year)
        settings: BillingSettings = suite.billing.state.settings
        late = replace_settings(settings, card_expiry_notice_days=0)
        after_expiry = expiry_end(month, year) + timedelta(days=1)

        with clock.frozen(after_expiry):
            done = await jobs.run_once(
                suite.billing.state.session_factory, suite.billing.state.gateway, late, after_expiry
            )

        assert done["remind_card_expiring"] == 1
        assert len(await notices(suite, "payment_method.expiring", subscription)) == 1


def replace_settings(settings: BillingSettings, **changes: Any) -> BillingSettings:
    return settings.model_copy(update=changes)
