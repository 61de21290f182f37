"""Changing plan: upgrades paid now less the unused part of the period, downgrades at its end."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from billing_api.periods import add_months
from billing_api.subscriptions.plan_change import unused_credit
from shared import clock
from tests import support
from tests.billing_api.conftest import Suite, User
from tests.billing_api.test_lifecycle import end_of, latest_grants, run_jobs, subscribed

START = datetime(2026, 3, 1, 12, tzinfo=UTC)


class TestUnusedCredit:
    @pytest.mark.parametrize(
        ("now", "expected", "rule"),
        [
            (START, 29900 * 29 // 30, "the day of the change counts as used"),
            (START + timedelta(days=9, hours=3), 29900 * 20 // 30, "on day 10: 20 of 30 days"),
            (START + timedelta(days=29), 0, "on the last day nothing is left"),
            (START + timedelta(days=45), 0, "after the end nothing is left"),
            (START - timedelta(days=1), 29900, "a period not started yet is all unused"),
        ],
    )
    def test_credit_is_the_unused_whole_days_rounded_down(
        self, now: datetime, expected: int, rule: str
    ) -> None:
        end = START + timedelta(days=30)
        assert unused_credit(29900, start=START, end=end, now=now) == expected, rule

    def test_nothing_paid_gives_no_credit(self) -> None:
        end = START + timedelta(days=7)
        assert unused_credit(0, start=START, end=end, now=START) == 0


async def change(user: User, subscription_id: str, plan_id: str, **body: Any) -> Any:
    return await user.post(
        f"/api/v1/subscriptions/{subscription_id}/change-plan", json={"plan_id": plan_id, **body}
    )


class TestUpgrade:
    async def test_upgrade_on_day_ten_charges_the_difference_and_starts_a_new_period(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        basic, premium = await suite.plan("basic"), await suite.plan("premium")
        subscription = await subscribed(suite, user, plan="basic")
        start = datetime.fromisoformat(subscription["current_period_start"])
        total_days = (end_of(subscription) - start).days
        day_ten = start + timedelta(days=9, hours=1)

        with clock.frozen(day_ten):
            answer = await change(user, subscription["id"], premium["id"])
            assert answer.status_code == 200, answer.text
            body = answer.json()
            credit = 29900 * (total_days - 10) // total_days
            assert body["change"] == "upgrade"
            assert body["credit"] == {"amount": credit, "currency": "RUB"}
            assert body["payment"]["amount"] == {"amount": 59900 - credit, "currency": "RUB"}
            assert body["subscription"]["plan_id"] == basic["id"], "nothing changes before paying"
            await suite.pay(body["payment"]["checkout_url"])

            async def on_premium() -> bool:
                return bool(
                    (await user.subscription(subscription["id"]))["plan_id"] == premium["id"]
                )

            await support.eventually(on_premium)
            upgraded = await user.subscription(subscription["id"])

        assert datetime.fromisoformat(upgraded["current_period_start"]) == day_ten
        assert end_of(upgraded) == add_months(day_ten, 1)
        grants = await latest_grants(suite, user)
        assert [str(grant.plan_id) for grant in grants] == [premium["id"]]
        changed = await suite.events("subscription.plan_changed")
        assert [(e.data.previous_plan.code, e.data.plan.code) for e in changed] == [
            ("basic", "premium")
        ]
        assert changed[0].data.credit.amount == credit

        payments = (await user.get("/api/v1/payments")).json()["items"]
        first = next(p for p in payments if p["purpose"] == "subscription")
        quote = (await user.get(f"/api/v1/payments/{first['id']}/refund-quote")).json()
        assert quote["refundable_amount"]["amount"] == 0
        assert quote["rule"] == "credited to a plan upgrade"
        statement = (await user.get("/api/v1/statement")).json()["items"]
        captured = [entry for entry in statement if entry["kind"] == "payment_captured"]
        amounts = sorted(line["amount"]["amount"] for e in captured for line in e["lines"])
        assert amounts == sorted([29900, 29900, 59900 - credit, 59900 - credit])

    async def test_asking_again_returns_the_same_payment_and_another_plan_waits(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        premium, pass30 = await suite.plan("premium"), await suite.plan("pass-30")
        subscription = await subscribed(suite, user, plan="basic")
        first = (await change(user, subscription["id"], premium["id"])).json()
        again = (await change(user, subscription["id"], premium["id"])).json()
        assert again["payment"]["id"] == first["payment"]["id"]
        other = await change(user, subscription["id"], pass30["id"])
        assert other.status_code == 409
        assert other.json()["error"] == "UpgradeAwaitingPayment"

    async def test_a_credit_held_by_a_waiting_upgrade_cannot_also_be_refunded(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        premium = await suite.plan("premium")
        subscription = await subscribed(suite, user, plan="basic")
        paid = subscription["latest_payment"]["id"]
        await change(user, subscription["id"], premium["id"])

        quote = (await user.get(f"/api/v1/payments/{paid}/refund-quote")).json()
        assert (quote["refundable_amount"]["amount"], quote["rule"]) == (
            0,
            "credited to a plan upgrade",
        )
        cancel = await user.post(
            f"/api/v1/subscriptions/{subscription['id']}/cancel", json={"at_period_end": False}
        )
        assert (cancel.status_code, cancel.json()["error"]) == (409, "SubscriptionNotCancelable")
        assert (await user.subscription(subscription["id"]))["status"] == "active"
        refunds = await suite.scalar("SELECT count(*) FROM billing.refund")
        assert refunds == 0


class TestDowngrade:
    async def test_downgrade_waits_for_the_period_end_and_the_renewal_charges_the_new_plan(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        basic, premium = await suite.plan("basic"), await suite.plan("premium")
        subscription = await subscribed(suite, user, plan="premium")
        answer = (await change(user, subscription["id"], basic["id"])).json()
        assert answer["change"] == "downgrade"
        assert answer["payment"] is None
        assert answer["effective_at"] == subscription["current_period_end"]
        assert answer["subscription"]["pending_plan_id"] == basic["id"]
        assert answer["subscription"]["plan_id"] == premium["id"], "premium until the end"

        end = end_of(subscription)
        assert (await run_jobs(suite, end - timedelta(minutes=30)))["renew_due_subscriptions"] == 1
        renewed = await user.subscription(subscription["id"])
        assert renewed["plan_id"] == basic["id"]
        assert renewed["pending_plan_id"] is None
        assert renewed["latest_payment"]["amount"]["amount"] == 29900
        assert datetime.fromisoformat(renewed["current_period_start"]) == end
        grants = await latest_grants(suite, user)
        assert [str(grant.plan_id) for grant in grants] == [basic["id"]]

    async def test_choosing_the_current_plan_takes_a_scheduled_downgrade_back(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        basic, premium = await suite.plan("basic"), await suite.plan("premium")
        subscription = await subscribed(suite, user, plan="premium")
        await change(user, subscription["id"], basic["id"])
        back = (await change(user, subscription["id"], premium["id"])).json()
        assert back["change"] == "downgrade_canceled"
        assert back["subscription"]["pending_plan_id"] is None

        end = end_of(subscription)
        await run_jobs(suite, end - timedelta(minutes=30))
        renewed = await user.subscription(subscription["id"])
        assert renewed["plan_id"] == premium["id"]
        assert renewed["latest_payment"]["amount"]["amount"] == 59900


class TestRefused:
    async def test_plan_changes_that_cannot_happen_are_refused_and_change_nothing(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        basic, premium = await suite.plan("basic"), await suite.plan("premium")
        subscription = await subscribed(suite, user, plan="basic")

        same = await change(user, subscription["id"], basic["id"])
        assert (same.status_code, same.json()["error"]) == (409, "PlanChangeNotAllowed")

        stranger = suite.as_user()
        assert (await change(stranger, subscription["id"], premium["id"])).status_code == 404
        unknown = await change(user, subscription["id"], "00000000-0000-0000-0000-000000000000")
        assert unknown.status_code == 404
        malformed = await change(user, subscription["id"], "not-a-uuid")
        assert malformed.status_code == 422

        await user.post(f"/api/v1/subscriptions/{subscription['id']}/cancel", json={})
        ending = await change(user, subscription["id"], premium["id"])
        assert (ending.status_code, ending.json()["error"]) == (409, "PlanChangeNotAllowed")
        after = await user.subscription(subscription["id"])
        assert after["plan_id"] == basic["id"]
        assert after["pending_plan_id"] is None
        payments = (await user.get("/api/v1/payments")).json()["items"]
        assert [p["purpose"] for p in payments] == ["subscription"]
