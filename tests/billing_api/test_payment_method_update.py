"""Updating a subscription's card: a setup checkout when nothing is owed, a checkout that pays the
due renewal in dunning or grace, and never two charges for one period.

Each sequence runs billing's real payment consumer, the gateway with its sandbox provider (the
checkout page and its signed webhooks) and the scheduled jobs, in-process or, where said, as a
``cinema billing run-jobs`` process of its own, with time moved.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from billing_api.gateway import GatewayClient
from billing_api.periods import add_months
from shared import clock
from shared.auth import AuthSettings
from tests import support
from tests.billing_api.conftest import Suite, User
from tests.billing_api.test_checkout_opening import GatewayStandIn, assert_gateway_unavailable
from tests.billing_api.test_lifecycle import end_of, off_session_charges, run_jobs, subscribed
from tests.billing_api.test_provider_side import wait_for_payment
from tests.billing_api.test_unused_renewals import (
    HeldCharge,
    jobs_pass,
    jobs_process_env,
    refunded_in_ledger,
    refunds_of,
    run_jobs_process,
)

GOOD = "4242424242424242"
FAILS_LATER = "4000000000000341"  # saves fine, every off-session charge of it is declined
PREMIUM = 59900


async def update(user: User, subscription_id: str, **kwargs: Any) -> httpx.Response:
    body = kwargs.pop("json", {"payment_method": "card"})
    return await user.post(
        f"/api/v1/subscriptions/{subscription_id}/payment-method", json=body, **kwargs
    )


async def opened(user: User, subscription_id: str) -> dict[str, Any]:
    answer = await update(user, subscription_id)
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    assert body["checkout_url"], "the new card is entered at a checkout"
    return body


async def in_dunning(suite: Suite, user: User) -> tuple[dict[str, Any], datetime]:
    """A premium subscription whose card declines its renewal an hour before the period ends:
    (the subscription, the time of that first declined try)."""
    subscription = await subscribed(suite, user, FAILS_LATER)
    first_try = end_of(subscription) - timedelta(minutes=30)
    assert (await run_jobs(suite, first_try))["renew_due_subscriptions"] == 0
    assert await off_session_charges(suite) == 1
    return subscription, first_try


async def payments_of(user: User, purpose: str) -> list[dict[str, Any]]:
    items = (await user.get("/api/v1/payments", params={"limit": 100})).json()["items"]
    return [p for p in items if p["purpose"] == purpose]


async def captured(user: User) -> list[int]:
    """What was taken from the user's card, payment by payment (refunds aside)."""
    statement = (await user.get("/api/v1/statement")).json()["items"]
    return sorted(
        line["amount"]["amount"]
        for entry in statement
        if entry["kind"] == "payment_captured"
        for line in entry["lines"]
        if line["side"] == "credit"
    )


class TestInGrace:
    async def test_a_new_card_pays_the_renewal_and_the_period_runs_on_from_the_old_end(
        self, suite: Suite, database_url: str, broker_prefix: str
    ) -> None:
        user = suite.as_user()
        subscription, first_try = await in_dunning(suite, user)
        end = end_of(subscription)
        await run_jobs(suite, end + timedelta(minutes=1))
        assert (await user.subscription(subscription["id"]))["status"] == "grace"

        with clock.frozen(end + timedelta(hours=3)):
            checkout = await opened(user, subscription["id"])
            assert checkout["purpose"] == "renewal"
            assert checkout["amount"] == {"amount": PREMIUM, "currency": "RUB"}
            await suite.pay(checkout["checkout_url"], GOOD)
            active = await user.wait_for_subscription(subscription["id"], "active")

        assert datetime.fromisoformat(active["current_period_start"]) == end
        assert end_of(active) == add_months(end, 1), "no day lost, none doubled"
        assert active["latest_payment"]["id"] == checkout["payment_id"]
        assert active["payment_method"]["last4"] == "4242", "the new card is saved"
        renewed = await suite.events("subscription.renewed")
        assert [(e.data.amount.amount, e.data.current_period_end) for e in renewed] == [
            (PREMIUM, add_months(end, 1))
        ]
        # The retries the decline scheduled (+1 d, +2 d) charge nothing: the renewal is paid.
        async with jobs_process_env(suite, database_url, broker_prefix) as env:
            for later in (timedelta(days=1), timedelta(days=2, minutes=1)):
                done = await run_jobs_process(suite, env, first_try + later)
                assert done["renew_due_subscriptions"] == 0
        assert await off_session_charges(suite) == 1, "only the declined first try"
        assert await captured(user) == [PREMIUM, PREMIUM], "the first period, then this one"

        # The next renewal charges the new card (the old one declines every off-session charge).
        next_end = add_months(end, 1)
        assert (await run_jobs(suite, next_end - timedelta(minutes=30)))[
            "renew_due_subscriptions"
        ] == 1
        after = await user.subscription(subscription["id"])
        assert (after["status"], end_of(after)) == ("active", add_months(end, 2))
        assert await captured(user) == [PREMIUM] * 3


class TestOwingNothing:
    async def test_a_setup_checkout_charges_nothing_and_the_next_renewal_charges_the_new_card(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        subscription = await subscribed(suite, user, FAILS_LATER)

        checkout = await opened(user, subscription["id"])
        assert (checkout["purpose"], checkout["amount"]) == (
            "card_update",
            {"amount": 0, "currency": "RUB"},
        )
        await suite.pay(checkout["checkout_url"], GOOD)
        await wait_for_payment(user, checkout["payment_id"], "succeeded")

        updated = await user.subscription(subscription["id"])
        assert subscription["payment_method"]["last4"] == "0341"
        assert updated["payment_method"]["last4"] == "4242"
        assert {**updated, "payment_method": None} == {**subscription, "payment_method": None}, (
            "only the saved card changed"
        )
        assert await captured(user) == [PREMIUM], "nothing was charged"
        end = end_of(subscription)
        assert (await run_jobs(suite, end - timedelta(minutes=30)))["renew_due_subscriptions"] == 1
        renewed = await user.subscription(subscription["id"])
        assert (renewed["status"], end_of(renewed)) == ("active", add_months(end, 1))
        assert await captured(user) == [PREMIUM, PREMIUM]

    async def test_a_declined_setup_checkout_keeps_the_old_card(self, suite: Suite) -> None:
        user = suite.as_user()
        subscription = await subscribed(suite, user, GOOD)
        checkout = await opened(user, subscription["id"])

        await suite.pay(checkout["checkout_url"], "4000000000000002")
        await wait_for_payment(user, checkout["payment_id"], "failed")

        kept = await user.subscription(subscription["id"])
        assert kept["payment_method"] == subscription["payment_method"]
        end = end_of(subscription)
        assert (await run_jobs(suite, end - timedelta(minutes=30)))["renew_due_subscriptions"] == 1


class TestOneCheckoutAtATime:
    async def test_asking_again_returns_the_open_checkout_until_it_expires(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        subscription = await subscribed(suite, user)
        first = await opened(user, subscription["id"])

        again = await update(user, subscription["id"])
        assert again.status_code == 200
        assert again.json() == first

        expires_at = datetime.fromisoformat(first["expires_at"])
        await run_jobs(suite, expires_at + timedelta(minutes=1))
        with clock.frozen(expires_at + timedelta(minutes=2)):
            fresh = await update(user, subscription["id"])
        assert fresh.status_code == 201
        assert fresh.json()["payment_id"] != first["payment_id"]

    async def test_a_retry_with_the_same_idempotency_key_replays_the_first_answer(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        subscription = await subscribed(suite, user)
        key = {"Idempotency-Key": "card-update-1"}

        first = await update(user, subscription["id"], headers=key)
        replay = await update(user, subscription["id"], headers=key)
        other_body = await update(
            user, subscription["id"], json={"payment_method": "card", "x": 1}, headers=key
        )

        assert first.status_code == replay.status_code == 201
        assert replay.json() == first.json()
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert (other_body.status_code, other_body.json()["error"]) == (
            422,
            "IdempotencyKeyReused",
        )
        assert len(await payments_of(user, "card_update")) == 1


class TestRefused:
    async def test_another_users_subscription_is_not_found(self, suite: Suite) -> None:
        owner, stranger = suite.as_user(), suite.as_user()
        subscription = await subscribed(suite, owner)

        answer = await update(stranger, subscription["id"])

        assert (answer.status_code, answer.json()["error"]) == (404, "SubscriptionNotFound")
        assert await payments_of(owner, "card_update") == []

    @pytest.mark.parametrize("method", ["wallet", "paypal", None])
    async def test_only_a_card_can_be_saved(self, suite: Suite, method: str | None) -> None:
        user = suite.as_user()
        subscription = await subscribed(suite, user)

        answer = await update(user, subscription["id"], json={"payment_method": method})

        assert (answer.status_code, answer.json()["error"]) == (422, "ValidationError")

    async def test_a_subscription_that_ended_or_never_started_has_no_card_to_update(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        canceled = await subscribed(suite, user, plan="basic")
        await user.post(
            f"/api/v1/subscriptions/{canceled['id']}/cancel", json={"at_period_end": False}
        )
        expired = await subscribed(suite, user, plan="premium")
        await suite.execute(
            "UPDATE subscription SET status = 'expired' WHERE id = :id", id=expired["id"]
        )
        plan = await suite.plan("premium")
        pending = (await user.post("/api/v1/subscriptions", json={"plan_id": plan["id"]})).json()
        assert pending["status"] == "pending"

        for subscription in (canceled, expired, pending):
            answer = await update(user, subscription["id"])
            assert (answer.status_code, answer.json()["error"]) == (
                409,
                "PaymentMethodNotUpdatable",
            ), subscription["status"]
        assert await payments_of(user, "card_update") == []


class TestNoDoubleCharge:
    async def test_while_the_checkout_is_open_no_retry_charges_the_same_period(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        subscription, first_try = await in_dunning(suite, user)
        end = end_of(subscription)

        with clock.frozen(first_try + timedelta(minutes=10)) as frozen:
            checkout = await opened(user, subscription["id"])
            assert checkout["amount"]["amount"] == PREMIUM, "in dunning: the renewal is owed"
            # The retry was due at +1 h: held while the checkout is open.
            done = await jobs_pass(suite, frozen.advance(timedelta(minutes=55)))
            assert done["renew_due_subscriptions"] == 0
            assert await off_session_charges(suite) == 1
            frozen.advance(timedelta(minutes=3))
            await suite.pay(checkout["checkout_url"], GOOD)
            renewed = await wait_for_payment(user, checkout["payment_id"], "succeeded")
            assert renewed["amount"]["amount"] == PREMIUM

        for later in (timedelta(hours=2), timedelta(days=1), timedelta(days=2, minutes=1)):
            assert (await run_jobs(suite, first_try + later))["renew_due_subscriptions"] == 0
        after = await user.subscription(subscription["id"])
        assert (after["status"], end_of(after)) == ("active", add_months(end, 1))
        assert await off_session_charges(suite) == 1
        assert await captured(user) == [PREMIUM, PREMIUM]

    async def test_a_checkout_declined_then_expired_unpaid_lets_the_dunning_go_on(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        subscription, first_try = await in_dunning(suite, user)

        with clock.frozen(first_try + timedelta(minutes=10)):
            checkout = await opened(user, subscription["id"])
            await suite.pay(checkout["checkout_url"], "4000000000000002")
            await wait_for_payment(user, checkout["payment_id"], "failed")
        assert len(await suite.events("subscription.renewal_failed")) == 1, (
            "a decline at the checkout is no dunning attempt"
        )

        expired = datetime.fromisoformat(checkout["expires_at"]) + timedelta(minutes=1)
        done = await run_jobs(suite, expired)
        assert done["abandon_expired_checkouts"] == 1
        assert done["renew_due_subscriptions"] == 0, "the pass closed the checkout after renewals"
        # The retry that was due at +1 h while the checkout was open is charged now.
        assert (await run_jobs(suite, expired + timedelta(minutes=1)))[
            "renew_due_subscriptions"
        ] == 0
        assert await off_session_charges(suite) == 2
        assert len(await suite.events("subscription.renewal_failed")) == 2

    async def test_an_off_session_charge_in_flight_answers_503_and_makes_nothing(
        self, suite: Suite, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        user = suite.as_user()
        subscription, first_try = await in_dunning(suite, user)
        held = HeldCharge(monkeypatch, suite.billing.state.gateway)

        with clock.frozen(first_try + timedelta(hours=1)) as frozen:
            run = asyncio.create_task(jobs_pass(suite, frozen.current))
            await held.started.wait()  # the retry's payment is committed, its charge is out
            busy = await update(user, subscription["id"], headers={"Idempotency-Key": "k1"})
            assert (busy.status_code, busy.json()["error"]) == (503, "RenewalChargeInProgress")
            assert busy.headers["Retry-After"]
            held.release()
            await run
            await support.eventually(lambda: _renewal_failures(suite, 2), timeout=15)
            retried = await update(user, subscription["id"], headers={"Idempotency-Key": "k1"})

        assert retried.status_code == 201, "the 503 released the key: the retry ran afresh"
        assert retried.json()["purpose"] == "renewal"
        assert len(await payments_of(user, "renewal")) == 3  # two declined tries, this checkout

    async def test_if_a_retry_and_the_checkout_both_succeed_the_second_is_refunded_in_full(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        subscription, first_try = await in_dunning(suite, user)
        end = end_of(subscription)
        with clock.frozen(first_try + timedelta(minutes=10)):
            checkout = await opened(user, subscription["id"])
        retry_at = first_try + timedelta(minutes=20)
        await make_both_succeed(suite, subscription["id"], retry_at)

        assert (await run_jobs(suite, retry_at))["renew_due_subscriptions"] == 1
        with clock.frozen(retry_at + timedelta(minutes=5)) as frozen:
            await suite.pay(checkout["checkout_url"], GOOD)
            await wait_for_payment(user, checkout["payment_id"], "succeeded")
            await jobs_pass(suite, frozen.advance(timedelta(minutes=1)))
            await wait_for_payment(user, checkout["payment_id"], "refunded")

        after = await user.subscription(subscription["id"])
        assert (after["status"], end_of(after)) == ("active", add_months(end, 1)), "one period"
        assert [
            (r.amount, r.status, r.reason) for r in await refunds_of(suite, checkout["payment_id"])
        ] == [(PREMIUM, "succeeded", "renewal_superseded")]
        assert await captured(user) == [PREMIUM] * 3
        assert await refunded_in_ledger(user) == [PREMIUM]


async def make_both_succeed(suite: Suite, subscription_id: str, retry_at: datetime) -> None:
    """What the hold prevents, forced: the old card works again at the bank, and a retry is
    due at ``retry_at`` while the checkout is still open (as if its hold had lapsed)."""
    async with suite.gateway.state.resources.engine.begin() as conn:
        await conn.execute(sa.text("UPDATE sandbox_payment_method SET fails_off_session = false"))
    await suite.execute(
        "UPDATE subscription SET next_renewal_at = :at WHERE id = :id",
        at=retry_at,
        id=subscription_id,
    )


async def _renewal_failures(suite: Suite, count: int) -> bool:
    return len(await suite.events("subscription.renewal_failed")) >= count


class TestTheCheckoutPaidWhileARetryIsInFlight:
    async def test_the_retry_succeeding_second_is_refunded_in_full(
        self, suite: Suite, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        user = suite.as_user()
        subscription, first_try = await in_dunning(suite, user)
        end = end_of(subscription)
        with clock.frozen(first_try + timedelta(minutes=10)):
            checkout = await opened(user, subscription["id"])
        retry_at = first_try + timedelta(minutes=20)
        await make_both_succeed(suite, subscription["id"], retry_at)
        held = HeldCharge(monkeypatch, suite.billing.state.gateway)

        with clock.frozen(retry_at) as frozen:
            run = asyncio.create_task(jobs_pass(suite, frozen.current))
            await held.started.wait()  # the retry's charge is out
            frozen.advance(timedelta(minutes=2))
            await suite.pay(checkout["checkout_url"], GOOD)
            await wait_for_payment(user, checkout["payment_id"], "succeeded")
            held.release()
            assert (await run)["renew_due_subscriptions"] == 1, "the charge itself succeeded"
            [retry] = [
                p
                for p in await payments_of(user, "renewal")
                if p["id"] != checkout["payment_id"] and p["status"] != "failed"
            ]
            await jobs_pass(suite, frozen.advance(timedelta(minutes=1)))
            await wait_for_payment(user, retry["id"], "refunded")

        after = await user.subscription(subscription["id"])
        assert (after["status"], end_of(after)) == ("active", add_months(end, 1)), "one period"
        assert after["latest_payment"]["id"] == checkout["payment_id"]
        assert [(r.amount, r.reason) for r in await refunds_of(suite, retry["id"])] == [
            (PREMIUM, "renewal_superseded")
        ]
        assert await refunded_in_ledger(user) == [PREMIUM]


@pytest.fixture
async def stand_in(suite: Suite) -> AsyncIterator[GatewayStandIn]:
    stand_in = GatewayStandIn(httpx.ASGITransport(suite.gateway))
    async with httpx.AsyncClient(transport=stand_in, base_url="http://gateway.test") as http:
        working = suite.billing.state.gateway
        suite.billing.state.gateway = GatewayClient(http, "http://gateway.test", AuthSettings())
        yield stand_in
        suite.billing.state.gateway = working


class TestGatewayDown:
    async def test_a_renewal_checkout_never_opened_is_opened_by_reconciliation_not_charged(
        self, suite: Suite, stand_in: GatewayStandIn
    ) -> None:
        user = suite.as_user()
        subscription, first_try = await in_dunning(suite, user)
        asked = first_try + timedelta(minutes=10)
        with clock.frozen(asked):
            stand_in.mode = "down"
            assert_gateway_unavailable(await update(user, subscription["id"]))
        [waiting] = [p for p in await payments_of(user, "renewal") if p["status"] == "pending"]
        assert waiting["checkout_url"] is None

        await run_jobs(suite, asked + timedelta(minutes=16))
        reopened = (await user.get(f"/api/v1/payments/{waiting['id']}")).json()
        assert reopened["status"] == "pending"
        assert reopened["checkout_url"], "reconciliation opened it under the same id"
        assert await off_session_charges(suite) == 1, "never charged off-session"
        with clock.frozen(asked + timedelta(minutes=20)):
            again = await update(user, subscription["id"])
        assert (again.status_code, again.json()["payment_id"]) == (200, waiting["id"])
        assert again.json()["checkout_url"] == reopened["checkout_url"]


class TestCardReplacedWhileARenewalIsInFlight:
    async def test_the_renewal_charged_to_the_old_card_does_not_bring_the_old_card_back(
        self, suite: Suite, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        user = suite.as_user()
        subscription = await subscribed(suite, user, GOOD)
        end = end_of(subscription)
        held = HeldCharge(monkeypatch, suite.billing.state.gateway)

        with clock.frozen(end - timedelta(minutes=30)) as frozen:
            run = asyncio.create_task(jobs_pass(suite, frozen.current))
            await held.started.wait()  # the renewal's charge of the old card is out
            checkout = await opened(user, subscription["id"])
            assert checkout["purpose"] == "card_update", "nothing is owed yet"
            await suite.pay(checkout["checkout_url"], "5555555555554444")
            await wait_for_payment(user, checkout["payment_id"], "succeeded")
            held.release()
            await run

        after = await user.subscription(subscription["id"])
        assert (after["status"], end_of(after)) == ("active", add_months(end, 1))
        assert after["payment_method"]["last4"] == "4444", "the card saved last is kept"


class TestTheCheckoutPaidWhileARetryIsDeclined:
    async def test_the_declined_retry_puts_the_paid_subscription_in_no_dunning(
        self, suite: Suite, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        user = suite.as_user()
        subscription, first_try = await in_dunning(suite, user)
        end = end_of(subscription)
        with clock.frozen(first_try + timedelta(minutes=10)):
            checkout = await opened(user, subscription["id"])
        retry_at = first_try + timedelta(minutes=20)
        await suite.execute(  # as if the checkout's hold had lapsed: a retry is due
            "UPDATE subscription SET next_renewal_at = :at WHERE id = :id",
            at=retry_at,
            id=subscription["id"],
        )
        held = HeldCharge(monkeypatch, suite.billing.state.gateway)

        with clock.frozen(retry_at) as frozen:
            run = asyncio.create_task(jobs_pass(suite, frozen.current))
            await held.started.wait()  # the retry's charge of the old card is out
            frozen.advance(timedelta(minutes=2))
            await suite.pay(checkout["checkout_url"], GOOD)
            await wait_for_payment(user, checkout["payment_id"], "succeeded")
            held.release()
            await run  # the old card declines the retry

        # The passes after it charge nothing: the period is paid.
        for later in (timedelta(hours=2), timedelta(days=1, hours=1), timedelta(days=3)):
            await run_jobs(suite, retry_at + later)
        after = await user.subscription(subscription["id"])
        assert (after["status"], end_of(after)) == ("active", add_months(end, 1)), "one period"
        assert await captured(user) == [PREMIUM, PREMIUM], "the first period, then the checkout"
        assert len(await suite.events("subscription.renewal_failed")) == 1, "only the first try"
