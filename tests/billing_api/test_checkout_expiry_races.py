"""A checkout's expiry and its payment settled at the same time, on real row locks.

Both paths lock the subscription first, then the payment (billing's lock order), so whichever
comes second waits for the first instead of deadlocking, and then sees what the first did: an
expiry after the payment succeeded changes nothing, a payment after the expiry still activates
the abandoned subscription (a late payment is kept, not lost).
"""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

from billing_api import locks
from billing_api.activation import handlers
from billing_api.activation import service as activation
from shared import events
from shared.money import Money
from tests.billing_api.conftest import Suite, User
from tests.billing_api.test_refunds import BASIC_PRICE, handle

# Long enough for the second path to reach the lock the first one holds.
REACH_THE_LOCK = 0.5


async def waiting_checkout(suite: Suite, user: User) -> tuple[str, UUID]:
    plan = await suite.plan("basic")
    created = await user.post("/api/v1/subscriptions", json={"plan_id": plan["id"]})
    assert created.status_code in (200, 201), created.text
    body: dict[str, Any] = created.json()
    assert body["status"] == "pending"
    return body["id"], UUID(body["latest_payment"]["id"])


def about(user: User, payment_id: UUID) -> dict[str, Any]:
    return {
        "payment_id": payment_id,
        "customer": events.Customer(id=user.id),
        "amount": Money(amount=BASIC_PRICE, currency="RUB"),
        "provider": "sandbox",
    }


class TestExpiryMeetsPayment:
    async def test_an_expiry_waits_for_the_payment_being_settled_and_then_changes_nothing(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        subscription_id, payment_id = await waiting_checkout(suite, user)
        sessions = suite.billing.state.session_factory
        async with sessions() as settling, settling.begin():
            payment = await locks.lock_payment(settling, payment_id)
            assert payment is not None
            await activation.complete_payment(
                settling, payment, provider="sandbox", payment_method_ref="pm_card"
            )
            expiry = asyncio.create_task(
                handle(
                    suite,
                    handlers.on_payment_expired,
                    events.PaymentExpired(**about(user, payment_id)),
                )
            )
            await asyncio.sleep(REACH_THE_LOCK)
            assert not expiry.done(), "the expiry waits for the subscription's lock"
        await asyncio.wait_for(expiry, timeout=10)

        subscription = await user.get(f"/api/v1/subscriptions/{subscription_id}")
        assert subscription.json()["status"] == "active"
        paid = await user.get(f"/api/v1/payments/{payment_id}")
        assert paid.json()["status"] == "succeeded"

    async def test_a_payment_waits_for_the_expiry_job_and_then_activates_the_abandoned_checkout(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        subscription_id, payment_id = await waiting_checkout(suite, user)
        sessions = suite.billing.state.session_factory
        async with sessions() as expiring, expiring.begin():
            payment = await locks.claim_payment(expiring, payment_id)
            assert payment is not None
            assert await activation.expire_payment(expiring, payment)
            settling = asyncio.create_task(
                handle(
                    suite,
                    handlers.on_payment_succeeded,
                    events.PaymentSucceeded(**about(user, payment_id), payment_method_ref="pm_1"),
                )
            )
            await asyncio.sleep(REACH_THE_LOCK)
            assert not settling.done(), "the payment waits for the subscription's lock"
        await asyncio.wait_for(settling, timeout=10)

        subscription = (await user.get(f"/api/v1/subscriptions/{subscription_id}")).json()
        assert subscription["status"] == "active", "a late payment still starts it"
        assert subscription["latest_payment"]["id"] == str(payment_id)
        paid = await user.get(f"/api/v1/payments/{payment_id}")
        assert paid.json()["status"] == "succeeded"
        refunds = await suite.scalar(
            "select count(*) from billing.refund where payment_id = :id", id=payment_id
        )
        assert refunds == 0, "the payment bought the period: nothing is given back"
