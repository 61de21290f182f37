"""Stripe events found by their PaymentIntent only (a refund made in the dashboard, a dispute)
while the payment's first success is still being processed by another gateway."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from payment_gateway.webhooks.processor import WebhookProcessor
from tests.payment_gateway.conftest import payment_body, webhooks_processed
from tests.payment_gateway.stripe_standin import StripeStandin, sign_webhook, webhook_body
from tests.payment_gateway.test_stripe_gateway import SECRET, client, standin  # noqa: F401
from tests.shared.messaging import Probe

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")


async def deliver(
    http: httpx.AsyncClient, event_type: str, obj: dict[str, object], event_id: str
) -> None:
    body = webhook_body(event_type, obj, event_id=event_id)
    response = await http.post(
        "/webhooks/stripe",
        content=body,
        headers={"Stripe-Signature": sign_webhook(body, SECRET, int(time.time()))},
    )
    assert response.status_code == 200


def another_processor(http: httpx.AsyncClient) -> WebhookProcessor:
    app = http.app  # type: ignore[attr-defined]
    return WebhookProcessor(app.state.resources.session_factory, app.state.providers)


async def test_dashboard_refund_reported_while_the_payment_is_being_processed_is_recorded(
    client: tuple[httpx.AsyncClient, Probe],  # noqa: F811
    standin: StripeStandin,  # noqa: F811
) -> None:
    http, _ = client
    app = http.app  # type: ignore[attr-defined]
    [task] = [t for t in app.state.resources.tasks if t.get_name() == "webhook-processor"]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    created = (await http.post("/internal/v1/payments", json=payment_body(amount=5000))).json()
    intent_id = standin.complete_session(created["provider_ref"])
    await deliver(
        http, "checkout.session.completed", standin.object(created["provider_ref"]), "evt_paid"
    )

    # One gateway processes the payment; Stripe's answer about its refunds is slow to arrive.
    release = standin.hold_answers("/v1/refunds")
    first = asyncio.create_task(another_processor(http).process_pending())
    try:
        await asyncio.to_thread(standin.holding.wait, 10)
        # Meanwhile staff refund part of it in Stripe's dashboard, and another gateway hears of it.
        refund_id = standin.refund_in_dashboard(intent_id, amount=2000)
        await deliver(http, "refund.created", standin.object(refund_id), "evt_refund")
        second = asyncio.create_task(another_processor(http).process_pending())
        await asyncio.sleep(0.5)
    finally:
        release.set()
    await asyncio.gather(first, second)
    async with asyncio.timeout(15):
        while True:
            await another_processor(http).process_pending()
            payment = (await http.get(f"/internal/v1/payments/{created['payment_id']}")).json()
            if payment["refunded_amount"] == 2000:
                break
            await asyncio.sleep(0.2)

    assert payment["status"] == "partially_refunded"
    await webhooks_processed(app)
