"""An event that keeps failing waits out its backoff, counted from when it failed, so the events
stored after it are processed meanwhile however long each failure takes."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from uuid import UUID, uuid4

from payment_gateway.models import Payment, WebhookEvent
from payment_gateway.providers import base
from payment_gateway.webhooks.processor import WebhookProcessor
from shared import clock
from tests import support
from tests.payment_gateway.conftest import Gateway
from tests.payment_gateway.test_webhook_processing import (
    paid_at_the_sandbox,
    status,
    stop_processor,
)
from tests.payment_gateway.test_webhooks import hold_deliveries, post_webhook

READ_TIME = 0.3


class SlowAndDown(base.PaymentProvider):
    """The provider's side only: every read of its payments times out after a while."""

    name = "slowdown"

    def __init__(self) -> None:
        self.reads = 0

    async def fetch_payment(self, provider_ref: str) -> base.ProviderPayment:
        self.reads += 1
        await asyncio.sleep(READ_TIME)
        raise base.ProviderError(f"timed out reading {provider_ref}")

    async def fetch_payments(
        self, provider_refs: Sequence[str]
    ) -> Mapping[str, base.ProviderPayment]:
        return {ref: await self.fetch_payment(ref) for ref in provider_refs}


async def stuck_events(gateway: Gateway, provider: str, count: int) -> list[UUID]:
    """Payments at ``provider`` with one stored webhook each, stored before anything else."""
    ids = [uuid4() for _ in range(count)]
    async with gateway.app.state.resources.session_factory() as session, session.begin():
        for n, payment_id in enumerate(ids):
            session.add(
                Payment(
                    id=payment_id,
                    customer_id=uuid4(),
                    amount=1000,
                    currency="RUB",
                    description="Premium, 1 month",
                    mode="checkout",
                    provider=provider,
                    provider_ref=f"cs_{n}",
                    status="pending",
                    extra={},
                    refunded_amount=0,
                )
            )
        await session.flush()
        for n, payment_id in enumerate(ids):
            session.add(
                WebhookEvent(
                    provider=provider,
                    provider_event_id=f"evt_{n}",
                    event_type="checkout.session.completed",
                    payment_id=payment_id,
                    provider_ref=f"cs_{n}",
                    payload={},
                    received_at=clock.now(),
                )
            )
    return ids


class TestBackoff:
    async def test_events_failing_slower_than_their_backoff_do_not_starve_later_ones(
        self, gateway: Gateway
    ) -> None:
        hold_deliveries(gateway)
        await stop_processor(gateway)
        down = SlowAndDown()  # type: ignore[abstract]  # only reads are used
        gateway.app.state.providers.by_name[down.name] = down
        # A full batch of events whose every attempt takes longer than the longest backoff.
        await stuck_events(gateway, down.name, 2)
        payment_id, body = await paid_at_the_sandbox(gateway)
        assert (await post_webhook(gateway, body)).status_code == 200
        run = WebhookProcessor(
            gateway.app.state.resources.session_factory,
            gateway.app.state.providers,
            batch_size=2,
            max_backoff=2 * READ_TIME,
        )

        pending = asyncio.create_task(run.process_pending())
        try:

            async def paid() -> bool:
                return await status(gateway, payment_id) == "succeeded"

            await support.eventually(paid, timeout=20 * READ_TIME)
            done = await asyncio.wait_for(pending, timeout=5)
        finally:
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)

        assert done == 1
        # Read once in the failed batch and once each alone, then left to wait out the backoff.
        assert down.reads == 3
