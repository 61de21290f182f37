"""Stored webhooks processed after the answer, in batches, by the processor of any replica."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any
from uuid import UUID, uuid4

import orjson
import sqlalchemy as sa

from payment_gateway.providers import base
from payment_gateway.sandbox import events as sandbox_events
from payment_gateway.sandbox.models import SandboxWebhook
from payment_gateway.webhooks.processor import WebhookProcessor
from tests.payment_gateway.conftest import Gateway
from tests.payment_gateway.test_webhooks import hold_deliveries, post_webhook, queued


async def stop_processor(gateway: Gateway) -> None:
    """The gateway's own processor stops, as if the process died right after answering."""
    [task] = [t for t in gateway.app.state.resources.tasks if t.get_name() == "webhook-processor"]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def processor(
    gateway: Gateway, *, batch_size: int = 100, interval: float = 1.0
) -> WebhookProcessor:
    """Another run of the processor, as the next process (or another replica) would start."""
    return WebhookProcessor(
        gateway.app.state.resources.session_factory,
        gateway.app.state.providers,
        batch_size=batch_size,
        interval=interval,
    )


async def rows(gateway: Gateway, query: str) -> list[tuple[Any, ...]]:
    async with gateway.app.state.resources.engine.connect() as conn:
        return [tuple(row) for row in await conn.execute(sa.text(query))]


async def stored(gateway: Gateway) -> dict[str, tuple[bool, str | None]]:
    """Every stored webhook by type: (processed, outcome)."""
    found = await rows(
        gateway, "SELECT event_type, processed_at IS NOT NULL, outcome FROM webhook_event"
    )
    return {str(row[0]): (bool(row[1]), row[2]) for row in found}


async def published(gateway: Gateway) -> Counter[tuple[str, str]]:
    """(event type, payment id) of every event the gateway's outbox holds, counted."""
    found = await rows(gateway, "SELECT event_type, payload FROM outbox")
    return Counter((str(row[0]), str(orjson.loads(row[1])["data"]["payment_id"])) for row in found)


async def status(gateway: Gateway, payment_id: str) -> str:
    response = await gateway.client.get(f"/internal/v1/payments/{payment_id}")
    return str(response.json()["status"])


async def paid_at_the_sandbox(gateway: Gateway, amount: int = 29900) -> tuple[str, bytes]:
    """A payment paid on the sandbox's page whose webhook is still queued there."""
    created = (await gateway.create_payment(amount=amount)).json()
    await gateway.pay(created["checkout_url"])
    return created["payment_id"], await queued(gateway, "checkout.session.completed")


class TestAnswer:
    async def test_webhook_is_answered_and_stored_then_processed_once_by_the_processor(
        self, gateway: Gateway
    ) -> None:
        hold_deliveries(gateway)
        await stop_processor(gateway)
        payment_id, body = await paid_at_the_sandbox(gateway)

        response = await post_webhook(gateway, body)

        assert response.status_code == 200
        assert response.json() == {"received": True, "duplicate": False}
        assert await stored(gateway) == {"checkout.session.completed": (False, None)}
        assert await status(gateway, payment_id) == "pending"

        assert await processor(gateway).process_pending() == 1
        assert await processor(gateway).process_pending() == 0
        assert await stored(gateway) == {"checkout.session.completed": (True, "payment succeeded")}
        assert await status(gateway, payment_id) == "succeeded"
        assert await published(gateway) == {("payment.succeeded", payment_id): 1}

    async def test_storing_a_webhook_wakes_the_processor_at_once(self, gateway: Gateway) -> None:
        hold_deliveries(gateway)
        await stop_processor(gateway)
        # One that would look by itself only every minute: only the request can wake it.
        sleepy = processor(gateway, interval=60.0)
        gateway.app.state.webhook_processor = sleepy
        running = asyncio.create_task(sleepy.run())
        await asyncio.sleep(0.1)  # its first look, at start, found nothing
        payment_id, body = await paid_at_the_sandbox(gateway)

        try:
            assert (await post_webhook(gateway, body)).status_code == 200
            async with asyncio.timeout(10):
                while await status(gateway, payment_id) != "succeeded":
                    await asyncio.sleep(0.02)
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
        assert await published(gateway) == {("payment.succeeded", payment_id): 1}

    async def test_same_event_delivered_twice_is_stored_and_processed_once(
        self, gateway: Gateway
    ) -> None:
        hold_deliveries(gateway)
        await stop_processor(gateway)
        payment_id, body = await paid_at_the_sandbox(gateway)

        first = await post_webhook(gateway, body)
        second = await post_webhook(gateway, body)
        assert await processor(gateway).process_pending() == 1
        third = await post_webhook(gateway, body)
        assert await processor(gateway).process_pending() == 0

        assert [r.json()["duplicate"] for r in (first, second, third)] == [False, True, True]
        assert await stored(gateway) == {"checkout.session.completed": (True, "payment succeeded")}
        assert await published(gateway) == {("payment.succeeded", payment_id): 1}


class TestFailures:
    async def test_unknown_payment_and_a_failing_event_do_not_hold_the_batch_back(
        self, gateway: Gateway
    ) -> None:
        hold_deliveries(gateway)
        await stop_processor(gateway)
        paid, paid_body = await paid_at_the_sandbox(gateway)
        broken, broken_body = await paid_at_the_sandbox(gateway)
        # The sandbox forgets the second payment: re-reading it at the provider fails.
        async with gateway.app.state.sandbox.sessions() as db, db.begin():
            await db.execute(
                sa.text("DELETE FROM sandbox_session WHERE payment_id = :id"), {"id": broken}
            )
        async with gateway.app.state.sandbox.sessions() as db, db.begin():
            await sandbox_events.enqueue(db, "checkout.session.expired", "cs_sb_nobody", uuid4())
        unknown_body = await queued(gateway, "checkout.session.expired")

        for body in (broken_body, unknown_body, paid_body):  # the failing one first
            assert (await post_webhook(gateway, body)).status_code == 200
        run = processor(gateway)
        assert await run.process_pending() == 2

        events = await rows(
            gateway, "SELECT payment_id, processed_at IS NOT NULL, outcome FROM webhook_event"
        )
        by_payment = {str(row[0]): (row[1], row[2]) for row in events}
        assert by_payment[paid] == (True, "payment succeeded")
        assert by_payment[broken][0] is False
        assert str(by_payment[broken][1]).startswith("failed: ProviderError")
        assert (True, "unknown payment") in by_payment.values()
        assert await status(gateway, paid) == "succeeded"
        assert await status(gateway, broken) == "pending"
        assert await published(gateway) == {("payment.succeeded", paid): 1}
        # kept for a later run, after a backoff: not tried again at once
        assert await run.process_pending() == 0


class TestReplicas:
    async def test_two_processors_at_once_process_every_event_exactly_once(
        self, gateway: Gateway
    ) -> None:
        hold_deliveries(gateway)
        await stop_processor(gateway)
        payments = [(await paid_at_the_sandbox(gateway, amount=1000))[0] for _ in range(12)]
        # A second event about each payment (a partial refund), so batches share payments.
        for payment_id in payments:
            ref = (await gateway.client.get(f"/internal/v1/payments/{payment_id}")).json()[
                "provider_ref"
            ]
            await gateway.app.state.sandbox.refund(
                base.RefundRequest(
                    refund_id=uuid4(),
                    payment_id=UUID(payment_id),
                    payment_provider_ref=ref,
                    amount=400,
                    currency="RUB",
                )
            )
        async with gateway.app.state.sandbox.sessions() as db:
            hooks = list(
                await db.scalars(sa.select(SandboxWebhook.body).order_by(sa.func.random()))
            )
        for hook in hooks:  # stored in a shuffled order, as a provider may deliver them
            assert (await post_webhook(gateway, orjson.dumps(hook))).status_code == 200

        done = await asyncio.gather(
            processor(gateway, batch_size=5).process_pending(),
            processor(gateway, batch_size=5).process_pending(),
        )

        assert sum(done) == len(hooks) == 24
        assert await rows(gateway, "SELECT id FROM webhook_event WHERE processed_at IS NULL") == []
        expected = Counter(
            {(kind, p): 1 for p in payments for kind in ("payment.succeeded", "refund.succeeded")}
        )
        assert await published(gateway) == expected
        for payment_id in payments:
            assert await status(gateway, payment_id) == "partially_refunded"
