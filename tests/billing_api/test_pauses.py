"""Pause instead of cancel: asking for a pause, the pause through time (no access, no charge,
renewed at its end), a declined charge at its end, ending it early, taking it back."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx

from billing_api.gateway import GatewayClient
from billing_api.periods import add_months
from shared import clock
from shared.auth import AuthSettings
from tests.billing_api.conftest import Suite, User
from tests.billing_api.test_lifecycle import (
    end_of,
    latest_grants,
    off_session_charges,
    run_jobs,
    subscribed,
)

FAILS_LATER = "4000000000000341"
LOST_LATER = "4000099900000013"  # saved fine, declined for good off-session (lost card)
GRACE_DAYS = 2  # the demo plans'


def url(subscription: dict[str, Any], action: str) -> str:
    return f"/api/v1/subscriptions/{subscription['id']}/{action}"


async def pause(user: User, subscription: dict[str, Any], months: int = 1) -> httpx.Response:
    return await user.post(url(subscription, "pause"), json={"months": months})


async def paused(suite: Suite, user: User, months: int = 1, **body: Any) -> dict[str, Any]:
    """A subscription whose paid period has ended into a pause of ``months`` months."""
    subscription = await subscribed(suite, user, **body)
    answer = await pause(user, subscription, months)
    assert answer.status_code == 200, answer.text
    await run_jobs(suite, end_of(subscription) + timedelta(minutes=1))
    now = await user.subscription(subscription["id"])
    assert now["status"] == "paused", now
    return now


def pause_of(subscription: dict[str, Any]) -> tuple[datetime, datetime]:
    window = subscription["pause"]
    return datetime.fromisoformat(window["starts_at"]), datetime.fromisoformat(window["resumes_at"])


def start_of(subscription: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(subscription["current_period_start"])


async def payments_of(user: User) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = (
        await user.get("/api/v1/payments", params={"limit": 100})
    ).json()["items"]
    return items


class TestAskingForAPause:
    async def test_a_pause_starts_at_the_period_end_and_access_ends_there_without_grace(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        subscription = await subscribed(suite, user)
        end = end_of(subscription)

        answer = await pause(user, subscription, months=2)

        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert (body["status"], pause_of(body)) == ("active", (end, add_months(end, 2)))
        assert (await user.subscription(subscription["id"]))["pause"] == body["pause"]
        (notice,) = await suite.events("subscription.paused")
        assert (notice.data.starts_at, notice.data.resumes_at) == (end, add_months(end, 2))
        (grant,) = await latest_grants(suite, user)
        assert grant.valid_until == end, "no grace after a period that ends in a pause"

    async def test_months_outside_one_to_three_are_refused(self, suite: Suite) -> None:
        user = suite.as_user()
        subscription = await subscribed(suite, user)
        for body in ({"months": 0}, {"months": 4}, {"months": "1"}, {"months": 1.5}, {}):
            answer = await user.post(url(subscription, "pause"), json=body)
            assert answer.status_code == 422, (body, answer.text)
        assert (await user.subscription(subscription["id"]))["pause"] is None

    async def test_only_an_active_renewing_subscription_can_pause(self, suite: Suite) -> None:
        user = suite.as_user()
        plan = await suite.plan("basic")
        waiting = (await user.post("/api/v1/subscriptions", json={"plan_id": plan["id"]})).json()
        assert (await pause(user, waiting)).status_code == 409

        subscription = await subscribed(suite, user)
        await user.post(url(subscription, "cancel"), json={})  # ends at its period end
        refused = await pause(user, subscription)
        assert refused.status_code == 409
        assert refused.json()["error"] == "SubscriptionNotPausable"

        await user.post(url(subscription, "cancel"), json={"at_period_end": False})
        assert (await pause(user, subscription)).status_code == 409

    async def test_one_pause_at_a_time(self, suite: Suite) -> None:
        user = suite.as_user()
        subscription = await subscribed(suite, user)
        assert (await pause(user, subscription)).status_code == 200

        again = await pause(user, subscription, months=3)

        assert again.status_code == 409
        assert again.json()["error"] == "SubscriptionNotPausable"
        assert len(await suite.events("subscription.paused")) == 1

    async def test_a_third_pause_in_a_year_is_refused_and_taken_back_ones_do_not_count(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        subscription = await subscribed(suite, user)
        for _ in range(3):  # asked for and taken back before they began: none counts
            assert (await pause(user, subscription)).status_code == 200
            assert (await user.post(url(subscription, "resume"))).status_code == 200
        for _ in range(2):  # two pauses run through: paused, then renewed at the end
            assert (await pause(user, subscription)).status_code == 200
            now = await user.subscription(subscription["id"])
            await run_jobs(suite, end_of(now) + timedelta(minutes=1))
            _, resumes_at = pause_of(await user.subscription(subscription["id"]))
            await run_jobs(suite, resumes_at - timedelta(minutes=30))
            assert (await user.subscription(subscription["id"]))["status"] == "active"

        third = await pause(user, subscription)

        assert third.status_code == 409
        assert third.json()["error"] == "PauseLimitReached"

    async def test_another_users_subscription_is_not_found(self, suite: Suite) -> None:
        owner, stranger = suite.as_user(), suite.as_user()
        subscription = await subscribed(suite, owner)
        assert (await pause(stranger, subscription)).status_code == 404
        assert (await pause(owner, subscription)).status_code == 200
        assert (await stranger.post(url(subscription, "resume"))).status_code == 404
        assert (await owner.subscription(subscription["id"]))["pause"] is not None

    async def test_a_retry_with_the_same_key_replays_the_first_answer(self, suite: Suite) -> None:
        user = suite.as_user()
        subscription = await subscribed(suite, user)
        key = {"Idempotency-Key": "pause-1"}
        first = await user.post(url(subscription, "pause"), json={"months": 2}, headers=key)
        second = await user.post(url(subscription, "pause"), json={"months": 2}, headers=key)
        assert (first.status_code, second.status_code) == (200, 200)
        assert second.headers.get("Idempotent-Replayed") == "true"
        assert second.json() == first.json()
        assert len(await suite.events("subscription.paused")) == 1

    async def test_the_plan_cannot_change_while_a_pause_is_scheduled_or_running(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        basic = await suite.plan("basic")
        subscription = await subscribed(suite, user)
        await pause(user, subscription)
        change = {"plan_id": basic["id"]}
        assert (await user.post(url(subscription, "change-plan"), json=change)).status_code == 409
        await run_jobs(suite, end_of(subscription) + timedelta(minutes=1))
        assert (await user.post(url(subscription, "change-plan"), json=change)).status_code == 409


class TestPauseThroughTime:
    async def test_no_access_during_the_pause_and_its_end_renews_once_from_the_pause_end(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        subscription = await subscribed(suite, user)
        end = end_of(subscription)
        await pause(user, subscription, months=2)
        resumes_at = add_months(end, 2)

        done = await run_jobs(suite, end - timedelta(minutes=30))
        assert done["renew_due_subscriptions"] == 0, "nothing is charged at a pause's start"
        await run_jobs(suite, end + timedelta(minutes=1))
        during = await user.subscription(subscription["id"])
        assert during["status"] == "paused"
        assert pause_of(during) == (end, resumes_at)
        assert await latest_grants(suite, user) == []
        assert (await run_jobs(suite, end + timedelta(days=40)))["renew_due_subscriptions"] == 0
        assert await off_session_charges(suite) == 0

        done = await run_jobs(suite, resumes_at - timedelta(minutes=30))
        assert done["renew_due_subscriptions"] == 1
        await run_jobs(suite, resumes_at + timedelta(minutes=1))

        after = await user.subscription(subscription["id"])
        assert after["status"] == "active"
        assert after["pause"] is None
        assert (start_of(after), end_of(after)) == (resumes_at, add_months(resumes_at, 1))
        assert await off_session_charges(suite) == 1
        (grant,) = await latest_grants(suite, user)
        assert grant.valid_until == add_months(resumes_at, 1) + timedelta(days=GRACE_DAYS)
        (renewed,) = await suite.events("subscription.renewed")
        assert renewed.data.current_period_end == add_months(resumes_at, 1)
        statuses = sorted((p["purpose"], p["status"]) for p in await payments_of(user))
        assert statuses == [("renewal", "succeeded"), ("subscription", "succeeded")]

    async def test_a_declined_charge_at_the_pause_end_goes_through_dunning_and_grace(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        subscription = await paused(suite, user, card=FAILS_LATER)
        _, resumes_at = pause_of(subscription)
        first_try = resumes_at - timedelta(minutes=30)

        await run_jobs(suite, first_try)
        assert (await user.subscription(subscription["id"]))["status"] == "paused"
        assert len(await suite.events("subscription.renewal_failed")) == 1
        await run_jobs(suite, resumes_at + timedelta(minutes=1))

        grace = await user.subscription(subscription["id"])
        assert grace["status"] == "grace"
        assert end_of(grace) == resumes_at
        (grant,) = await latest_grants(suite, user)
        assert grant.valid_until == resumes_at + timedelta(days=GRACE_DAYS)
        (started,) = await suite.events("subscription.grace_started")
        assert started.data.grace_until == resumes_at + timedelta(days=GRACE_DAYS)

        before = await off_session_charges(suite)
        await run_jobs(suite, first_try + timedelta(hours=1))
        assert await off_session_charges(suite) == before + 1, "the dunning retry"
        await run_jobs(suite, resumes_at + timedelta(days=GRACE_DAYS))
        assert (await user.subscription(subscription["id"]))["status"] == "expired"
        assert await latest_grants(suite, user) == []

    async def test_a_card_lost_at_the_pause_end_is_not_retried_and_grace_follows_the_pause(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        subscription = await paused(suite, user, card=LOST_LATER)
        _, resumes_at = pause_of(subscription)

        await run_jobs(suite, resumes_at - timedelta(minutes=30))
        assert (await user.subscription(subscription["id"]))["status"] == "paused"
        (asked,) = await suite.events("subscription.payment_method_required")
        assert asked.data.grace_until == resumes_at + timedelta(days=GRACE_DAYS)
        await run_jobs(suite, resumes_at + timedelta(minutes=1))
        assert (await user.subscription(subscription["id"]))["status"] == "grace"
        (grant,) = await latest_grants(suite, user)
        assert grant.valid_until == resumes_at + timedelta(days=GRACE_DAYS)
        await run_jobs(suite, resumes_at + timedelta(days=1))
        assert await off_session_charges(suite) == 1, "a card lost for good is not retried"

    async def test_resuming_during_the_pause_charges_once_and_gives_access_now(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        subscription = await paused(suite, user, months=1)
        starts_at, resumes_at = pause_of(subscription)
        at = starts_at + timedelta(days=10)  # the new period runs past the old pause end

        with clock.frozen(at):
            key = {"Idempotency-Key": "resume-1"}
            answer = await user.post(url(subscription, "resume"), headers=key)
            retried = await user.post(url(subscription, "resume"), headers=key)

        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert (body["status"], body["pause"]) == ("active", None)
        assert (start_of(body), end_of(body)) == (at, add_months(at, 1))
        assert retried.json() == body
        assert await off_session_charges(suite) == 1
        (grant,) = await latest_grants(suite, user)
        assert grant.valid_until == add_months(at, 1) + timedelta(days=GRACE_DAYS)
        (resumed,) = await suite.events("subscription.resumed")
        assert resumed.data.resumed_at == at
        assert len(await suite.events("subscription.renewed")) == 1

        done = await run_jobs(suite, resumes_at - timedelta(minutes=30))
        assert done["renew_due_subscriptions"] == 0, "the old pause end charges nothing"
        assert await off_session_charges(suite) == 1

    async def test_a_declined_charge_on_resume_goes_to_grace_from_the_resume(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        subscription = await paused(suite, user, months=2, card=FAILS_LATER)
        starts_at, _ = pause_of(subscription)
        at = starts_at + timedelta(days=5)

        with clock.frozen(at):
            answer = await user.post(url(subscription, "resume"))
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "paused"
        assert pause_of(answer.json())[1] == at, "the pause ended when the subscriber resumed"
        assert len(await suite.events("subscription.renewal_failed")) == 1

        await run_jobs(suite, at + timedelta(minutes=1))
        grace = await user.subscription(subscription["id"])
        assert grace["status"] == "grace"
        (grant,) = await latest_grants(suite, user)
        assert grant.valid_until == at + timedelta(days=GRACE_DAYS)

    async def test_an_unreachable_gateway_on_resume_leaves_the_renewal_to_the_job(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        subscription = await paused(suite, user, months=2)
        starts_at, _ = pause_of(subscription)
        at = starts_at + timedelta(days=5)
        working = suite.billing.state.gateway
        suite.billing.state.gateway = GatewayClient(
            httpx.AsyncClient(transport=httpx.MockTransport(lambda _: httpx.Response(503))),
            "http://gateway.test",
            AuthSettings(),
        )
        try:
            with clock.frozen(at):
                answer = await user.post(url(subscription, "resume"))
        finally:
            suite.billing.state.gateway = working
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "paused"
        assert [p["status"] for p in await payments_of(user) if p["purpose"] == "renewal"] == [
            "pending"
        ]

        await run_jobs(suite, at + timedelta(minutes=6))  # after the claim's lease

        after = await user.subscription(subscription["id"])
        assert after["status"] == "active"
        assert (start_of(after), end_of(after)) == (at, add_months(at, 1))
        assert await off_session_charges(suite) == 1
        assert [p["status"] for p in await payments_of(user) if p["purpose"] == "renewal"] == [
            "succeeded"
        ]

    async def test_resuming_before_the_pause_began_takes_it_back(self, suite: Suite) -> None:
        user = suite.as_user()
        subscription = await subscribed(suite, user)
        end = end_of(subscription)
        await pause(user, subscription, months=3)

        answer = await user.post(url(subscription, "resume"))

        assert answer.status_code == 200, answer.text
        assert (answer.json()["status"], answer.json()["pause"]) == ("active", None)
        (resumed,) = await suite.events("subscription.resumed")
        assert resumed.data.current_period_end == end
        (grant,) = await latest_grants(suite, user)
        assert grant.valid_until == end + timedelta(days=GRACE_DAYS)
        assert (await run_jobs(suite, end - timedelta(minutes=30)))["renew_due_subscriptions"] == 1
        after = await user.subscription(subscription["id"])
        assert (after["status"], end_of(after)) == ("active", add_months(end, 1))
        assert await off_session_charges(suite) == 1

    async def test_cancel_during_the_pause_ends_it_now_and_nothing_is_charged_later(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        subscription = await paused(suite, user)
        _, resumes_at = pause_of(subscription)

        answer = await user.post(url(subscription, "cancel"), json={})

        assert answer.status_code == 200, answer.text
        assert (answer.json()["status"], answer.json()["pause"]) == ("canceled", None)
        assert {p["status"] for p in await payments_of(user)} == {"succeeded"}, "no refund"
        await run_jobs(suite, resumes_at - timedelta(minutes=30))
        await run_jobs(suite, resumes_at + timedelta(minutes=1))
        assert (await user.subscription(subscription["id"]))["status"] == "canceled"
        assert await off_session_charges(suite) == 0
        assert await latest_grants(suite, user) == []

    async def test_a_renewal_being_charged_when_the_pause_is_asked_for_is_voided(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        subscription = await subscribed(suite, user)
        end = end_of(subscription)
        working = suite.billing.state.gateway
        suite.billing.state.gateway = GatewayClient(
            httpx.AsyncClient(transport=httpx.MockTransport(lambda _: httpx.Response(503))),
            "http://gateway.test",
            AuthSettings(),
        )
        try:  # the renewal is claimed, the gateway cannot be reached: it stays pending
            await run_jobs(suite, end - timedelta(minutes=30))
        finally:
            suite.billing.state.gateway = working

        with clock.frozen(end - timedelta(minutes=20)):
            assert (await pause(user, subscription)).status_code == 200
        await run_jobs(suite, end - timedelta(minutes=10))
        await run_jobs(suite, end + timedelta(minutes=1))

        assert (await user.subscription(subscription["id"]))["status"] == "paused"
        assert await off_session_charges(suite) == 0
        assert [p["status"] for p in await payments_of(user) if p["purpose"] == "renewal"] == [
            "expired"
        ]
