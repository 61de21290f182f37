"""A webhook event that keeps failing: its attempts are counted in its row (so a restarted or
another processor waits and keeps counting), it is parked after the configured number and
counted by a metric, and it is still settled by a refresh of its payment or by an operator."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from prometheus_client import REGISTRY

from payment_gateway.providers import base
from payment_gateway.webhooks.processor import WebhookProcessor
from tests.payment_gateway.conftest import Gateway
from tests.payment_gateway.test_webhook_backoff import stuck_events
from tests.payment_gateway.test_webhook_processing import stop_processor

BACKOFF = 0.2


class Flaky(base.PaymentProvider):
    """The provider's side only: reads fail while it is down, then answer paid."""

    name = "flaky"

    def __init__(self) -> None:
        self.down = True
        self.reads = 0

    async def fetch_payment(self, provider_ref: str) -> base.ProviderPayment:
        self.reads += 1
        if self.down:
            raise base.ProviderError(f"cannot read {provider_ref}")
        return base.ProviderPayment(
            provider_ref=provider_ref,
            status=base.ProviderStatus.SUCCEEDED,
            amount=1000,
            currency="RUB",
            charge_ref=provider_ref,
        )

    async def fetch_payments(
        self, provider_refs: Sequence[str]
    ) -> Mapping[str, base.ProviderPayment]:
        return {ref: await self.fetch_payment(ref) for ref in provider_refs}


async def stuck(gateway: Gateway) -> tuple[Flaky, str]:
    """A payment at a provider that is down, with one stored webhook about it."""
    await stop_processor(gateway)
    flaky = Flaky()  # type: ignore[abstract]  # only reads are used
    gateway.app.state.providers.by_name[flaky.name] = flaky
    [payment_id] = await stuck_events(gateway, flaky.name, 1)
    return flaky, str(payment_id)


def processor(gateway: Gateway, *, max_attempts: int = 3) -> WebhookProcessor:
    return WebhookProcessor(
        gateway.app.state.resources.session_factory,
        gateway.app.state.providers,
        max_attempts=max_attempts,
        max_backoff=BACKOFF,
    )


async def event_row(gateway: Gateway) -> dict[str, Any]:
    async with gateway.app.state.resources.engine.connect() as conn:
        row = (
            await conn.execute(
                sa.text(
                    "SELECT id, attempts, next_attempt_at IS NOT NULL AS waits,"
                    " parked_at IS NOT NULL AS parked, processed_at IS NOT NULL AS processed,"
                    " outcome FROM webhook_event"
                )
            )
        ).one()
    return dict(row._mapping)


async def park(gateway: Gateway, flaky: Flaky) -> dict[str, Any]:
    run = processor(gateway)
    for _ in range(20):
        await run.process_pending()
        if (await event_row(gateway))["parked"]:
            break
        await asyncio.sleep(BACKOFF)
    return await event_row(gateway)


def parked_metric() -> float:
    value = REGISTRY.get_sample_value("gateway_webhook_events_parked_total", {"provider": "flaky"})
    return float(value or 0.0)


class TestBackoff:
    async def test_a_restarted_processor_waits_out_the_stored_backoff_and_keeps_counting(
        self, gateway: Gateway
    ) -> None:
        flaky, _ = await stuck(gateway)
        await processor(gateway).process_pending()
        after_first = await event_row(gateway)
        reads = flaky.reads

        await processor(gateway).process_pending()  # a new process, at once
        assert flaky.reads == reads
        await asyncio.sleep(BACKOFF + 0.1)
        await processor(gateway).process_pending()  # and once the wait is over

        assert (after_first["attempts"], after_first["waits"]) == (1, True)
        assert str(after_first["outcome"]).startswith("failed: ProviderError")
        assert flaky.reads > reads
        assert (await event_row(gateway))["attempts"] == 2


class TestParking:
    async def test_after_the_last_attempt_the_event_is_parked_counted_and_left_alone(
        self, gateway: Gateway
    ) -> None:
        flaky, payment_id = await stuck(gateway)
        before = parked_metric()

        parked = await park(gateway, flaky)
        reads = flaky.reads
        await asyncio.sleep(BACKOFF + 0.1)
        await processor(gateway).process_pending()
        listed = await gateway.client.get("/internal/v1/webhooks/parked")

        assert (parked["attempts"], parked["parked"], parked["processed"]) == (3, True, False)
        assert str(parked["outcome"]).startswith("parked after 3 attempts; failed:")
        assert parked_metric() == before + 1
        assert flaky.reads == reads
        assert listed.status_code == 200
        [item] = listed.json()["items"]
        assert (item["id"], item["payment_id"], item["attempts"]) == (
            parked["id"],
            payment_id,
            3,
        )
        assert item["parked_at"] is not None

    async def test_an_operator_sends_a_parked_event_back_and_it_is_processed(
        self, gateway: Gateway
    ) -> None:
        flaky, payment_id = await stuck(gateway)
        parked = await park(gateway, flaky)
        flaky.down = False

        sent_back = await gateway.client.post(f"/internal/v1/webhooks/{parked['id']}/retry")
        assert await processor(gateway).process_pending() == 1

        assert sent_back.status_code == 200
        assert (sent_back.json()["parked_at"], sent_back.json()["attempts"]) == (None, 0)
        row = await event_row(gateway)
        assert (row["processed"], row["outcome"]) == (True, "payment succeeded")
        payment = await gateway.client.get(f"/internal/v1/payments/{payment_id}")
        assert payment.json()["status"] == "succeeded"
        assert (await gateway.client.get("/internal/v1/webhooks/parked")).json()["items"] == []

    async def test_a_refresh_of_the_payment_settles_its_parked_events(
        self, gateway: Gateway
    ) -> None:
        flaky, payment_id = await stuck(gateway)
        await park(gateway, flaky)
        flaky.down = False

        refreshed = await gateway.client.get(
            f"/internal/v1/payments/{payment_id}", params={"refresh": "true"}
        )

        assert refreshed.json()["status"] == "succeeded"
        row = await event_row(gateway)
        assert (row["processed"], row["outcome"]) == (
            True,
            "payment succeeded (settled by a refresh)",
        )
        assert await gateway.events() == [("payment.succeeded", payment_id)]

    async def test_an_operator_sends_every_parked_event_back_at_once(
        self, gateway: Gateway
    ) -> None:
        flaky, payment_id = await stuck(gateway)
        await park(gateway, flaky)
        flaky.down = False

        sent_back = await gateway.client.post("/internal/v1/webhooks/parked/retry")
        assert await processor(gateway).process_pending() == 1

        assert sent_back.json() == {"sent_back": 1}
        payment = await gateway.client.get(f"/internal/v1/payments/{payment_id}")
        assert payment.json()["status"] == "succeeded"

    async def test_unknown_event_is_answered_404_to_an_operator(self, gateway: Gateway) -> None:
        response = await gateway.client.post("/internal/v1/webhooks/999999/retry")
        assert (response.status_code, response.json()["error"]) == (404, "WebhookEventNotFound")
