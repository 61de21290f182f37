"""Changing plan: upgrades paid now less the unused part of the period, downgrades at its end."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa

from billing_api.periods import add_months
from billing_api.refunds import handlers
from billing_api.subscriptions.plan_change import unused_credit
from shared import clock, events
from shared.money import Money
from tests import support
from tests.billing_api.conftest import Suite, User
from tests.billing_api.test_lifecycle import end_of, latest_grants, run_jobs, subscribed
from tests.billing_api.test_refunds import (
    HeldRefund,
    balance,
    handle,
    paid_subscription,
    topped_up,
    waiting_for_locks,
)

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


class TestUpgradeMeetsRefund:
    async def test_refund_while_an_upgrade_of_the_same_subscription_commits_is_refused(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        premium = await suite.plan("premium")
        await topped_up(suite, user, 100000)
        subscription, first = await paid_subscription(suite, user)
        async with suite.billing.state.resources.engine.connect() as holder:
            # The wallet upgrade stops at the wallet's lock, its own transaction left open.
            await holder.execute(
                sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
                {"key": f"wallet:{user.id}:RUB"},
            )
            upgrade = asyncio.create_task(
                change(user, subscription["id"], premium["id"], payment_method="wallet")
            )
            await waiting_for_locks(suite, 1)
            refund = asyncio.create_task(user.post(f"/api/v1/payments/{first['id']}/refund"))
            await waiting_for_locks(suite, 2)
            await holder.rollback()
        upgraded, refunded = await upgrade, await refund

        assert upgraded.status_code == 200, upgraded.text
        assert (refunded.status_code, refunded.json()["error"]) == (409, "PaymentNotRefundable")
        after = await user.subscription(subscription["id"])
        assert (after["status"], after["plan_id"]) == ("active", premium["id"])
        paid = upgraded.json()["payment"]["amount"]["amount"]
        assert await balance(user) == 100000 - paid
        assert await suite.scalar("SELECT count(*) FROM refund") == 0
        assert (await user.get(f"/api/v1/payments/{first['id']}")).json()["status"] == "succeeded"

    async def test_upgrade_while_a_refund_of_the_same_subscription_runs_is_refused(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        premium = await suite.plan("premium")
        subscription, first = await paid_subscription(suite, user)
        gateway = HeldRefund(suite)
        suite.billing.state.gateway = gateway

        refund = asyncio.create_task(user.post(f"/api/v1/payments/{first['id']}/refund"))
        await asyncio.wait_for(gateway.reached.wait(), 15)  # its transaction holds its locks
        upgrade = asyncio.create_task(change(user, subscription["id"], premium["id"]))
        await waiting_for_locks(suite, 1)
        gateway.release.set()
        refunded, upgraded = await refund, await upgrade

        assert refunded.status_code == 201, refunded.text
        assert (upgraded.status_code, upgraded.json()["error"]) == (409, "PlanChangeNotAllowed")
        after = await user.subscription(subscription["id"])
        assert (after["status"], after["plan_id"]) == ("canceled", subscription["plan_id"])
        payments = (await user.get("/api/v1/payments")).json()["items"]
        assert [p["purpose"] for p in payments] == ["subscription"]
        assert payments[0]["refunded"]["amount"] == 29900

    async def test_an_upgrade_paid_after_the_subscription_ended_is_refunded_and_revives_nothing(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        basic, premium = await suite.plan("basic"), await suite.plan("premium")
        subscription, first = await paid_subscription(suite, user)
        upgrade = (await change(user, subscription["id"], premium["id"])).json()["payment"]
        # the first payment is disputed while the upgrade's checkout is still open
        await handle(
            suite,
            handlers.on_payment_disputed,
            events.PaymentDisputed(
                payment_id=UUID(first["id"]),
                customer=events.Customer(id=user.id),
                amount=Money(amount=29900, currency="RUB"),
                provider="sandbox",
                reason="fraudulent",
            ),
        )
        assert (await user.subscription(subscription["id"]))["status"] == "canceled"

        await suite.pay(upgrade["checkout_url"])  # the open checkout page, paid afterwards

        async def paid() -> bool:
            payment = (await user.get(f"/api/v1/payments/{upgrade['id']}")).json()
            return bool(payment["paid_at"] is not None)

        await support.eventually(paid, timeout=15)
        after = await user.subscription(subscription["id"])
        assert (after["status"], after["plan_id"]) == ("canceled", basic["id"])
        assert (await run_jobs(suite, clock.now()))["send_queued_refunds"] == 1

        payment = (await user.get(f"/api/v1/payments/{upgrade['id']}")).json()
        assert payment["status"] == "refunded"
        assert payment["refunded"] == payment["amount"]
        refunds = await suite.scalar(
            "SELECT count(*) FROM ledger_transaction WHERE kind = 'refund'"
        )
        assert refunds == 1
        assert await balance(user) == 0, "the disputed payment's credit is not given twice"
        assert await latest_grants(suite, user) == []


class TestSecondUpgrade:
    async def test_two_upgrades_in_a_row_cost_what_one_upgrade_to_the_last_plan_costs(
        self, suite: Suite
    ) -> None:
        premium, pass30 = await suite.plan("premium"), await suite.plan("pass-30")
        stepwise, direct = suite.as_user(), suite.as_user()
        by_steps = await subscribed(suite, stepwise, plan="basic")
        at_once = await subscribed(suite, direct, plan="basic")
        start = datetime.fromisoformat(by_steps["current_period_start"])
        assert end_of(by_steps) - start == end_of(at_once) - datetime.fromisoformat(
            at_once["current_period_start"]
        )

        with clock.frozen(start + timedelta(days=9, hours=1)):
            first = (await change(stepwise, by_steps["id"], premium["id"])).json()
            await suite.pay(first["payment"]["checkout_url"])

            async def on_premium() -> bool:
                found = await stepwise.subscription(by_steps["id"])
                return bool(found["plan_id"] == premium["id"])

            await support.eventually(on_premium, timeout=15)
            second = (await change(stepwise, by_steps["id"], pass30["id"])).json()
            one = (await change(direct, at_once["id"], pass30["id"])).json()

        steps = [first["payment"]["amount"]["amount"], second["payment"]["amount"]["amount"]]
        assert second["credit"]["amount"] == 59900, "premium's period was worth premium's price"
        assert sum(steps) == one["payment"]["amount"]["amount"]
