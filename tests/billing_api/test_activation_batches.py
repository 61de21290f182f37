"""billing's consumer taking the gateway's events in batches: several payments of one user settled
in one batch give access one snapshot of that user, with every film in it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

from prometheus_client import REGISTRY

from billing_api import demo
from billing_api.activation import unused_renewals
from billing_api.activation.handlers import CONSUMER, make_consumer
from billing_api.gateway import GatewayPayment, GatewayUnavailable
from billing_api.models import Payment
from shared import clock, events
from shared.auth import AuthSettings
from shared.broker import Broker
from shared.money import Money
from tests import support
from tests.billing_api.conftest import Suite, User
from tests.billing_api.test_admin_api import admin
from tests.billing_api.test_lifecycle import end_of, subscribed
from tests.billing_api.test_refunds import NeverAsked
from tests.billing_api.test_unused_renewals import jobs_pass, refunds_of, renewal_payment

TITLES = [title for title, _, _ in demo.MOVIES][:3]


async def open_purchase(user: User, title: str) -> UUID:
    response = await user.post(
        "/api/v1/purchases", json={"movie_id": str(demo.movie_id(title)), "kind": "buy"}
    )
    assert response.status_code == 201, response.text
    return UUID(response.json()["latest_payment"]["id"])


async def succeeded(suite: Suite, user: User, payment_id: UUID) -> events.Envelope[Any]:
    """The gateway's ``payment.succeeded`` for one of billing's payments."""
    async with suite.billing.state.session_factory() as session:
        payment = await session.get(Payment, payment_id)
        assert payment is not None
        amount = Money(amount=payment.amount, currency=payment.currency)
    return events.wrap(
        events.PaymentSucceeded(
            payment_id=payment_id,
            customer=events.Customer(id=user.id, email="viewer@example.com"),
            amount=amount,
            provider="sandbox",
        ),
        producer="payment_gateway",
    )


async def completed(user: User) -> set[UUID]:
    items = (await user.get("/api/v1/purchases")).json()["items"]
    return {UUID(item["movie_id"]) for item in items if item["status"] == "completed"}


class TestBatches:
    async def test_payments_of_one_user_settled_in_one_batch_publish_one_snapshot_of_them_all(
        self, suite: Suite, broker: Broker
    ) -> None:
        user = suite.as_user()
        payments = [await open_purchase(user, title) for title in TITLES]
        movies = {demo.movie_id(title) for title in TITLES}
        await suite.events("entitlements.changed")  # what checkout published so far
        suite.seen.clear()
        assert suite.consumer is not None
        await suite.consumer.stop()  # the events below wait in billing's queue
        for payment_id in payments:
            envelope = await succeeded(suite, user, payment_id)
            await broker.publish(
                events.encode(envelope), routing_key=envelope.type, message_id=str(envelope.id)
            )
        before = REGISTRY.get_sample_value(
            "consumer_batches_total", {"consumer": CONSUMER, "outcome": "committed"}
        )
        batched = make_consumer(
            broker, suite.billing.state.session_factory, concurrency=1, batch_wait=0.5
        )
        await batched.start()
        try:

            async def all_completed() -> bool:
                return await completed(user) == movies

            await support.eventually(all_completed, timeout=15)
        finally:
            await batched.stop()

        snapshots = [
            e.data for e in await suite.events("entitlements.changed") if e.data.user_id == user.id
        ]
        assert len(snapshots) == 1
        assert {grant.movie_id for grant in snapshots[0].grants} == movies
        after = REGISTRY.get_sample_value(
            "consumer_batches_total", {"consumer": CONSUMER, "outcome": "committed"}
        )
        assert (after or 0) - (before or 0) == 1


class ChargesDown(NeverAsked):
    """Takes refunds and never answers them; makes no off-session charge (an outage)."""

    async def charge_off_session(self, **kwargs: Any) -> GatewayPayment:
        raise GatewayUnavailable("the gateway is down")


class TestRenewalPaidInTheBatchOfARefundThatEndsTheSubscription:
    async def test_the_renewal_paid_just_before_in_the_batch_is_refunded_too(
        self, suite: Suite, broker: Broker
    ) -> None:
        user = suite.as_user()
        subscription = await subscribed(suite, user, plan="basic")
        first = subscription["latest_payment"]["id"]
        real_gateway = suite.billing.state.gateway
        suite.billing.state.gateway = ChargesDown(
            suite.gateway_http, "http://gateway.test", AuthSettings()
        )
        try:
            with clock.frozen(end_of(subscription) - timedelta(minutes=90)) as frozen:
                asked = await admin(
                    suite, "POST", f"/api/v1/admin/payments/{first}/refund", json={"reason": "x"}
                )
                assert asked.status_code == 201, asked.text
                assert asked.json()["status"] == "pending"  # the provider answers later
                await jobs_pass(suite, frozen.advance(timedelta(minutes=45)))
                renewal = await renewal_payment(user)
                assert renewal["status"] == "pending"  # charged, its answer still to come
                frozen.advance(timedelta(minutes=5))

                # The renewal's success and the first payment's refund reach billing together.
                assert suite.consumer is not None
                await suite.consumer.stop()
                paid = await succeeded(suite, user, UUID(renewal["id"]))
                refunded = events.wrap(
                    events.RefundSucceeded(
                        refund_id=UUID(asked.json()["id"]),
                        payment_id=UUID(first),
                        customer=events.Customer(id=user.id),
                        amount=Money(amount=29900, currency="RUB"),
                        provider="sandbox",
                    ),
                    producer="payment_gateway",
                )
                for envelope in (paid, refunded):
                    await broker.publish(
                        events.encode(envelope),
                        routing_key=envelope.type,
                        message_id=str(envelope.id),
                    )
                before = REGISTRY.get_sample_value(
                    "consumer_batches_total", {"consumer": CONSUMER, "outcome": "committed"}
                )
                batched = make_consumer(
                    broker, suite.billing.state.session_factory, concurrency=1, batch_wait=0.5
                )
                await batched.start()
                try:

                    async def canceled() -> bool:
                        found = await user.subscription(subscription["id"])
                        return bool(found["status"] == "canceled")

                    await support.eventually(canceled, timeout=15)
                finally:
                    await batched.stop()
                after = REGISTRY.get_sample_value(
                    "consumer_batches_total", {"consumer": CONSUMER, "outcome": "committed"}
                )
                assert (after or 0) - (before or 0) == 1  # both events in one transaction
        finally:
            suite.billing.state.gateway = real_gateway

        # The renewal paid for a period the refund has just cut off: its money goes back too.
        assert [(r.amount, r.reason) for r in await refunds_of(suite, renewal["id"])] == [
            (29900, unused_renewals.AFTER_CANCEL)
        ]
