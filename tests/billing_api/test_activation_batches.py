"""billing's consumer taking the gateway's events in batches: several payments of one user settled
in one batch give access one snapshot of that user, with every film in it."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from prometheus_client import REGISTRY

from billing_api import demo
from billing_api.activation.handlers import CONSUMER, make_consumer
from billing_api.models import Payment
from shared import events
from shared.broker import Broker
from shared.money import Money
from tests import support
from tests.billing_api.conftest import Suite, User

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
