"""Renewals, dunning, grace, expiry, cancel/resume and reconciliation, with time moved."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import httpx
import sqlalchemy as sa

from billing_api import jobs
from billing_api.config import BillingSettings
from shared import clock
from tests.billing_api.conftest import Suite, User


async def run_jobs(suite: Suite, at: datetime) -> dict[str, int]:
    settings: BillingSettings = suite.billing.state.settings
    with clock.frozen(at):
        return await jobs.run_once(
            suite.billing.state.session_factory, suite.billing.state.gateway, settings, at
        )


async def subscribed(
    suite: Suite, user: User, card: str = "4242424242424242", **body: Any
) -> dict[str, Any]:
    plan = await suite.plan(body.pop("plan", "premium"))
    created = (
        await user.post("/api/v1/subscriptions", json={"plan_id": plan["id"], **body})
    ).json()
    await suite.pay(created["latest_payment"]["checkout_url"], card)
    return await user.wait_for_subscription(created["id"], "active")


def end_of(subscription: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(subscription["current_period_end"])


async def off_session_charges(suite: Suite) -> int:
    async with suite.gateway.state.resources.engine.connect() as conn:
        count = await conn.scalar(
            sa.text("SELECT count(*) FROM payment WHERE mode = 'off_session'")
        )
    return int(count or 0)


async def latest_grants(suite: Suite, user: User) -> list[Any]:
    snapshots = [e for e in await suite.events("entitlements.changed") if e.data.user_id == user.id]
    return list(max(snapshots, key=lambda e: e.data.version).data.grants) if snapshots else []


class TestRenewals:
    async def test_a_monthly_subscription_renews_twelve_times_in_a_year(self, suite: Suite) -> None:
        user = suite.as_user()
        subscription = await subscribed(suite, user)
        first_end = end_of(subscription)
        for _ in range(12):
            end = end_of(await user.subscription(subscription["id"]))
            assert (await run_jobs(suite, end - timedelta(minutes=30)))[
                "renew_due_subscriptions"
            ] == 1
            assert (await run_jobs(suite, end - timedelta(minutes=20)))[
                "renew_due_subscriptions"
            ] == 0

        final = await user.subscription(subscription["id"])
        assert final["status"] == "active"
        assert end_of(final) == first_end.replace(year=first_end.year + 1)
        assert await off_session_charges(suite) == 12
        renewed = await suite.events("subscription.renewed")
        assert len(renewed) == 12
        payments = (await user.get("/api/v1/payments", params={"limit": 100})).json()["items"]
        assert sorted(p["purpose"] for p in payments) == ["renewal"] * 12 + ["subscription"]

    async def test_a_failing_card_goes_through_dunning_grace_and_expiry(self, suite: Suite) -> None:
        user = suite.as_user()
        subscription = await subscribed(suite, user, "4000000000000341")
        end = end_of(subscription)
        first_try = end - timedelta(minutes=30)

        await run_jobs(suite, first_try)
        assert (await user.subscription(subscription["id"]))["status"] == "active"
        await run_jobs(suite, end + timedelta(minutes=1))
        assert (await user.subscription(subscription["id"]))["status"] == "grace"
        grants = await latest_grants(suite, user)
        assert grants[0].valid_until == end + timedelta(days=2), "access is kept through grace"

        for offset in (timedelta(hours=1), timedelta(days=1), timedelta(days=2)):
            await run_jobs(suite, first_try + offset - timedelta(seconds=1))
            before = await off_session_charges(suite)
            await run_jobs(suite, first_try + offset)
            assert await off_session_charges(suite) == before + 1, f"a retry at +{offset}"
        assert (await user.subscription(subscription["id"]))["status"] == "grace"

        await run_jobs(suite, end + timedelta(days=2))
        assert (await user.subscription(subscription["id"]))["status"] == "expired"
        assert await latest_grants(suite, user) == []
        assert await off_session_charges(suite) == 4
        assert len(await suite.events("subscription.renewal_failed")) == 4
        assert len(await suite.events("subscription.expired")) == 1


class TestCancel:
    async def test_cancel_at_period_end_then_resume_renews_normally(self, suite: Suite) -> None:
        user = suite.as_user()
        subscription = await subscribed(suite, user)
        cancel = await user.post(f"/api/v1/subscriptions/{subscription['id']}/cancel", json={})
        assert cancel.json()["cancel_at_period_end"] is True
        resumed = await user.post(f"/api/v1/subscriptions/{subscription['id']}/resume")
        assert resumed.status_code == 200
        assert resumed.json()["cancel_at_period_end"] is False

        end = end_of(subscription)
        assert (await run_jobs(suite, end - timedelta(minutes=30)))["renew_due_subscriptions"] == 1
        assert (await user.subscription(subscription["id"]))["status"] == "active"

    async def test_cancel_at_period_end_expires_without_grace_and_is_reminded_once(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        subscription = await subscribed(suite, user)
        await user.post(f"/api/v1/subscriptions/{subscription['id']}/cancel", json={})
        end = end_of(subscription)
        assert (await run_jobs(suite, end - timedelta(days=2)))["remind_expiring"] == 1
        assert (await run_jobs(suite, end - timedelta(days=1)))["remind_expiring"] == 0
        assert (await run_jobs(suite, end - timedelta(minutes=30)))["renew_due_subscriptions"] == 0
        await run_jobs(suite, end)
        assert (await user.subscription(subscription["id"]))["status"] == "expired"
        assert len(await suite.events("subscription.expiring")) == 1

    async def test_cancel_now_revokes_access_at_once(self, suite: Suite) -> None:
        user = suite.as_user()
        subscription = await subscribed(suite, user)
        response = await user.post(
            f"/api/v1/subscriptions/{subscription['id']}/cancel", json={"at_period_end": False}
        )
        assert response.json()["status"] == "canceled"
        assert await latest_grants(suite, user) == []
        payment = (
            await user.get(f"/api/v1/payments/{subscription['latest_payment']['id']}")
        ).json()
        assert payment["status"] == "refunded", "inside the refund window: everything back"
        assert payment["refunded"] == payment["amount"]

    async def test_only_my_live_subscription_can_be_cancelled(self, suite: Suite) -> None:
        owner, stranger = suite.as_user(), suite.as_user()
        subscription = await subscribed(suite, owner)
        assert (
            await stranger.post(f"/api/v1/subscriptions/{subscription['id']}/cancel", json={})
        ).status_code == 404
        await owner.post(
            f"/api/v1/subscriptions/{subscription['id']}/cancel", json={"at_period_end": False}
        )
        again = await owner.post(f"/api/v1/subscriptions/{subscription['id']}/cancel", json={})
        assert again.status_code == 409


class TestReconciliation:
    async def test_a_payment_whose_webhook_is_lost_is_found_and_activated_once(
        self, suite: Suite
    ) -> None:
        working = suite.gateway.state.sandbox_sender.http
        suite.gateway.state.sandbox_sender.http = httpx.AsyncClient(
            transport=httpx.MockTransport(lambda request: httpx.Response(503))
        )
        user = suite.as_user()
        plan = await suite.plan("basic")
        created = (await user.post("/api/v1/subscriptions", json={"plan_id": plan["id"]})).json()
        await suite.pay(created["latest_payment"]["checkout_url"])
        await asyncio.sleep(0.5)
        assert (await user.subscription(created["id"]))["status"] == "pending"

        done = await run_jobs(suite, clock.now() + timedelta(minutes=16))
        assert done["reconcile_pending_payments"] == 1
        assert (await user.subscription(created["id"]))["status"] == "active"

        suite.gateway.state.sandbox_sender.http = working  # the late webhook arrives after all
        await asyncio.sleep(1.0)
        assert len(await suite.events("subscription.activated")) == 1


class TestConcurrentWorkers:
    async def test_two_workers_renew_each_due_subscription_exactly_once(self, suite: Suite) -> None:
        users = [suite.as_user() for _ in range(20)]
        subscriptions = await asyncio.gather(*(subscribed(suite, user) for user in users))
        latest_end = max(end_of(s) for s in subscriptions)
        at = latest_end - timedelta(minutes=30)

        settings: BillingSettings = suite.billing.state.settings
        sessions, gateway = suite.billing.state.session_factory, suite.billing.state.gateway
        with clock.frozen(at):  # one frozen clock for both: freezes must not interleave
            first, second = await asyncio.gather(
                jobs.run_once(sessions, gateway, settings, at),
                jobs.run_once(sessions, gateway, settings, at),
            )

        assert first["renew_due_subscriptions"] + second["renew_due_subscriptions"] == 20
        assert await off_session_charges(suite) == 20
        renewed = await suite.scalar("SELECT count(*) FROM payment WHERE purpose = 'renewal'")
        assert renewed == 20
