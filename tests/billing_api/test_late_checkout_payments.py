"""A checkout attempt paid after another attempt already paid for the same subscription.

A declined attempt is reported ``failed`` and billing starts a new payment for another try, but
the provider may still let the first one be paid (Stripe leaves a declined Checkout Session
open; the gateway records a success after a failure). That payment bought nothing billing still
sells: it is refunded in full, and the subscription keeps the period, and the status, it had.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from billing_api import demo
from billing_api.activation import handlers
from shared import clock, events
from shared.money import Money
from tests import support
from tests.billing_api.conftest import Suite, User
from tests.billing_api.test_lifecycle import run_jobs
from tests.billing_api.test_refunds import BASIC_PRICE, handle


async def declined_then_paid_again(suite: Suite, user: User) -> tuple[dict[str, Any], str]:
    """An active subscription paid by a second attempt; the first attempt, reported declined,
    is still open at the provider. Returns the subscription and the first attempt's checkout."""
    plan = await suite.plan("basic")
    first = (await user.post("/api/v1/subscriptions", json={"plan_id": plan["id"]})).json()
    attempt = first["latest_payment"]
    await handle(
        suite,
        handlers.on_payment_failed(),
        events.PaymentFailed(
            payment_id=UUID(attempt["id"]),
            customer=events.Customer(id=user.id),
            amount=Money(amount=BASIC_PRICE, currency="RUB"),
            provider="sandbox",
            failure_code="card_declined",
        ),
    )
    second = (await user.post("/api/v1/subscriptions", json={"plan_id": plan["id"]})).json()
    assert second["id"] == first["id"]
    assert second["latest_payment"]["id"] != attempt["id"], "a new payment for another try"
    paid = await suite.pay(second["latest_payment"]["checkout_url"])
    assert paid.status_code == 200, paid.text
    active = await user.wait_for_subscription(first["id"], "active")
    return active, attempt["checkout_url"]


async def payment_status(user: User, payment_id: str, status: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    async def reached() -> bool:
        seen.update((await user.get(f"/api/v1/payments/{payment_id}")).json())
        return bool(seen["status"] == status)

    await support.eventually(reached, timeout=15)
    return seen


class TestLateCheckoutPayment:
    async def test_a_first_attempt_paid_after_the_second_is_refunded_and_the_period_is_kept(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        subscription, first_checkout = await declined_then_paid_again(suite, user)

        paid = await suite.pay(first_checkout)  # the old tab, still open at the provider
        assert paid.status_code == 200, paid.text
        await payment_status(user, subscription["latest_payment"]["id"], "succeeded")
        late_id = next(
            p["id"]
            for p in (await user.get("/api/v1/payments")).json()["items"]
            if p["purpose"] == "subscription" and p["id"] != subscription["latest_payment"]["id"]
        )
        await payment_status(user, late_id, "succeeded")
        await run_jobs(suite, clock.now())  # sends the refund it queued

        refunded = await payment_status(user, late_id, "refunded")
        assert refunded["refunded"]["amount"] == BASIC_PRICE
        after = await user.subscription(subscription["id"])
        assert after["status"] == "active"
        assert after["current_period_end"] == subscription["current_period_end"]
        assert after["latest_payment"]["id"] == subscription["latest_payment"]["id"]

    async def test_a_first_attempt_paid_after_a_refund_does_not_revive_the_subscription(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        subscription, first_checkout = await declined_then_paid_again(suite, user)
        second = subscription["latest_payment"]["id"]
        refund = await user.post(f"/api/v1/payments/{second}/refund")
        assert refund.status_code == 201, refund.text
        await user.wait_for_subscription(subscription["id"], "canceled")

        paid = await suite.pay(first_checkout)
        assert paid.status_code == 200, paid.text
        late_id = next(
            p["id"]
            for p in (await user.get("/api/v1/payments")).json()["items"]
            if p["purpose"] == "subscription" and p["id"] != second
        )
        await payment_status(user, late_id, "succeeded")
        await run_jobs(suite, clock.now())

        await payment_status(user, late_id, "refunded")
        assert (await user.subscription(subscription["id"]))["status"] == "canceled"

    async def test_a_first_attempt_at_a_movie_paid_after_the_second_is_refunded_and_it_stays_bought(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        movie = str(demo.movie_id("Paper Moons"))
        first = (await user.post("/api/v1/purchases", json={"movie_id": movie})).json()
        attempt = first["latest_payment"]
        await handle(
            suite,
            handlers.on_payment_failed(),
            events.PaymentFailed(
                payment_id=UUID(attempt["id"]),
                customer=events.Customer(id=user.id),
                amount=Money(amount=attempt["amount"]["amount"], currency="RUB"),
                provider="sandbox",
                failure_code="card_declined",
            ),
        )
        second = (await user.post("/api/v1/purchases", json={"movie_id": movie})).json()
        assert second["latest_payment"]["id"] != attempt["id"]
        await suite.pay(second["latest_payment"]["checkout_url"])
        await payment_status(user, second["latest_payment"]["id"], "succeeded")

        await suite.pay(attempt["checkout_url"])
        await payment_status(user, attempt["id"], "succeeded")
        await run_jobs(suite, clock.now())

        await payment_status(user, attempt["id"], "refunded")
        [purchase] = (await user.get("/api/v1/purchases")).json()["items"]
        assert purchase["status"] == "completed"
        assert purchase["latest_payment"]["id"] == second["latest_payment"]["id"]
