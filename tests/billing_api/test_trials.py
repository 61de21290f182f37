"""Free trials: the checkout only saves the card; the first charge is the renewal at trial end."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx

from tests.billing_api.conftest import Suite, User
from tests.billing_api.test_lifecycle import end_of, latest_grants, off_session_charges, run_jobs


async def start_trial(suite: Suite, user: User, **body: Any) -> httpx.Response:
    plan = await suite.plan(body.pop("plan", "premium"))
    return await user.post(
        "/api/v1/subscriptions", json={"plan_id": plan["id"], "trial": True, **body}
    )


async def trial(suite: Suite, user: User, card: str = "4242424242424242") -> dict[str, Any]:
    created = await start_trial(suite, user)
    assert created.status_code == 201, created.text
    await suite.pay(created.json()["latest_payment"]["checkout_url"], card)
    return await user.wait_for_subscription(created.json()["id"], "active")


class TestStart:
    async def test_a_trial_saves_the_card_charges_nothing_and_gives_access_for_seven_days(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        created = (await start_trial(suite, user)).json()
        assert created["latest_payment"]["amount"] == {"amount": 0, "currency": "RUB"}
        assert created["latest_payment"]["checkout_url"], "the card is entered at a checkout"

        await suite.pay(created["latest_payment"]["checkout_url"])
        active = await user.wait_for_subscription(created["id"], "active")
        start = datetime.fromisoformat(active["current_period_start"])
        assert end_of(active) == start + timedelta(days=7)
        assert active["trial_end"] == active["current_period_end"]
        grants = await latest_grants(suite, user)
        grace = timedelta(days=2)  # it renews at trial end, so access includes the grace days
        assert [grant.valid_until for grant in grants] == [end_of(active) + grace]
        activated = await suite.events("subscription.activated")
        assert [(e.data.trial, e.data.amount.amount) for e in activated] == [(True, 0)]
        statement = (await user.get("/api/v1/statement")).json()["items"]
        assert statement == [], "no money moved"

    async def test_the_first_charge_is_made_at_trial_end_and_the_period_runs_on_from_it(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        subscription = await trial(suite, user)
        trial_end = end_of(subscription)
        await run_jobs(suite, trial_end - timedelta(days=1))
        assert await off_session_charges(suite) == 0, "nothing is charged during the trial"

        assert (await run_jobs(suite, trial_end - timedelta(minutes=30)))[
            "renew_due_subscriptions"
        ] == 1
        paid = await user.subscription(subscription["id"])
        assert paid["latest_payment"]["amount"] == {"amount": 59900, "currency": "RUB"}
        assert datetime.fromisoformat(paid["current_period_start"]) == trial_end
        assert end_of(paid).month == (trial_end.month % 12) + 1

    async def test_a_card_that_fails_later_ends_the_trial_in_grace_then_expiry(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        subscription = await trial(suite, user, "4000000000000341")
        trial_end = end_of(subscription)
        await run_jobs(suite, trial_end - timedelta(minutes=30))
        await run_jobs(suite, trial_end + timedelta(minutes=1))
        assert (await user.subscription(subscription["id"]))["status"] == "grace"
        await run_jobs(suite, trial_end + timedelta(days=2, minutes=1))
        assert (await user.subscription(subscription["id"]))["status"] == "expired"
        assert await latest_grants(suite, user) == []


class TestOncePerPlan:
    async def test_a_second_trial_of_the_same_plan_is_refused(self, suite: Suite) -> None:
        user = suite.as_user()
        subscription = await trial(suite, user)
        await user.post(
            f"/api/v1/subscriptions/{subscription['id']}/cancel", json={"at_period_end": False}
        )
        again = await start_trial(suite, user)
        assert (again.status_code, again.json()["error"]) == (409, "TrialAlreadyUsed")

    async def test_a_pending_trial_checkout_is_returned_instead_of_a_second_one(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        first = (await start_trial(suite, user)).json()
        second = await start_trial(suite, user)
        assert second.status_code == 200
        assert second.json()["latest_payment"]["id"] == first["latest_payment"]["id"]


class TestRefused:
    async def test_trials_need_a_trial_plan_a_card_and_no_promo_code(self, suite: Suite) -> None:
        user = suite.as_user()
        cases = [
            ({"plan": "basic"}, "TrialNotOffered"),
            ({"payment_method": "wallet"}, "TrialNeedsCard"),
            ({"promo_code": "WELCOME15"}, "PromoCodeNotForTrial"),
        ]
        for body, error in cases:
            answer = await start_trial(suite, user, **body)
            assert (answer.status_code, answer.json()["error"]) == (422, error), body
        assert (await user.get("/api/v1/subscriptions")).json()["items"] == []
