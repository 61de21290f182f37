"""A card update through the gateway with Stripe as its provider (the Stripe stand-in): nothing
owed opens a setup-mode Checkout Session whose saved card the next renewal charges; a renewal
owed opens a payment-mode session that charges it and saves the card for later renewals."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from typing import Any
from uuid import uuid4

import httpx
import pytest
import stripe

from billing_api import demo
from billing_api.activation.handlers import make_consumer
from billing_api.app import create_app
from billing_api.config import BillingSettings
from billing_api.gateway import GatewayClient
from billing_api.periods import add_months
from payment_gateway.app import create_app as create_gateway
from payment_gateway.providers.stripe_provider import StripeProvider
from shared import clock
from shared.auth import AuthSettings
from shared.broker import Broker
from shared.outbox import OutboxRelay
from shared.settings import ServiceSettings
from tests import support
from tests.billing_api.conftest import Suite, User, truncate_billing
from tests.billing_api.test_lifecycle import end_of, run_jobs
from tests.billing_api.test_provider_side import wait_for_payment
from tests.payment_gateway.conftest import gateway_settings
from tests.payment_gateway.conftest import truncate as truncate_gateway
from tests.payment_gateway.stripe_standin import StripeStandin, sign_webhook, webhook_body
from tests.shared.messaging import Probe

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")

SECRET = "whsec_card_update_test"


@pytest.fixture
def standin(monkeypatch: pytest.MonkeyPatch) -> Iterator[StripeStandin]:
    monkeypatch.setattr(stripe, "enable_telemetry", False)
    with StripeStandin() as server:
        yield server


@pytest.fixture
async def suite(
    standin: StripeStandin, service_settings: ServiceSettings, broker: Broker
) -> AsyncIterator[Suite]:
    """billing wired to a gateway whose provider is Stripe (the stand-in), with billing's
    consumer and outbox relay running."""
    provider = StripeProvider(
        standin.api_key, SECRET, api_base=standin.url, http_client=stripe.HTTPXClient()
    )
    gateway = create_gateway(
        gateway_settings(service_settings, provider="stripe", sandbox_enabled=False),
        stripe=provider,
    )
    billing = create_app(BillingSettings(**service_settings.model_dump()))
    async with (
        gateway.router.lifespan_context(gateway),
        billing.router.lifespan_context(billing),
    ):
        await gateway.state.resources.broker.wait_connected()
        await billing.state.resources.broker.wait_connected()
        await truncate_gateway(gateway)
        await truncate_billing(billing)
        to_gateway = httpx.AsyncClient(
            transport=httpx.ASGITransport(gateway), base_url="http://gateway.test"
        )
        billing.state.gateway = GatewayClient(to_gateway, "http://gateway.test", AuthSettings())
        async with billing.state.session_factory() as session, session.begin():
            await demo.load(session)
        probe = await Probe.bind_many(broker, ("subscription.*",))
        resources = billing.state.resources
        consumer = make_consumer(broker, resources.session_factory)
        await consumer.start()
        relay = asyncio.create_task(
            OutboxRelay(resources.engine, resources.broker, schema="billing").run()
        )
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(billing), base_url="http://billing.test"
        ) as http:
            yield Suite(billing, gateway, http, to_gateway, probe, consumer)
        relay.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await relay
        await consumer.stop()
        await support.delete_consumer_queues(broker, consumer.queues)
        await probe.close()
        await to_gateway.aclose()
    await provider.aclose()


def last_session(standin: StripeStandin) -> tuple[str, dict[str, Any]]:
    """The Checkout Session created last: its id and the parameters it was created with."""
    call = standin.requests_to("POST", "/v1/checkout/sessions")[-1]
    [session] = [
        s
        for s in standin.objects_of("checkout.session")
        if s["client_reference_id"] == call.params["client_reference_id"]
    ]
    return str(session["id"]), call.params


async def completed(suite: Suite, standin: StripeStandin, session_id: str) -> None:
    """Stripe tells the gateway (a signed webhook) that the Checkout Session completed."""
    body = webhook_body(
        "checkout.session.completed", standin.object(session_id), event_id=f"evt_{uuid4().hex}"
    )
    answer = await suite.gateway_http.post(
        "/webhooks/stripe",
        content=body,
        headers={"Stripe-Signature": sign_webhook(body, SECRET, int(time.time()))},
    )
    assert answer.status_code == 200, answer.text


async def subscribed(suite: Suite, standin: StripeStandin, user: User) -> dict[str, Any]:
    plan = await suite.plan("premium")
    created = (await user.post("/api/v1/subscriptions", json={"plan_id": plan["id"]})).json()
    session_id, _ = last_session(standin)
    standin.complete_session(session_id, payment_method="pm_old_card")
    await completed(suite, standin, session_id)
    return await user.wait_for_subscription(created["id"], "active")


async def update(user: User, subscription_id: str) -> dict[str, Any]:
    answer = await user.post(
        f"/api/v1/subscriptions/{subscription_id}/payment-method", json={"payment_method": "card"}
    )
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


def charged_methods(standin: StripeStandin) -> list[str]:
    return [
        str(call.params["payment_method"])
        for call in standin.requests_to("POST", "/v1/payment_intents")
    ]


class TestCardUpdateWithStripe:
    async def test_owing_nothing_opens_a_setup_session_and_the_next_renewal_charges_its_card(
        self, suite: Suite, standin: StripeStandin
    ) -> None:
        user = suite.as_user()
        subscription = await subscribed(suite, standin, user)

        checkout = await update(user, subscription["id"])
        session_id, params = last_session(standin)
        assert checkout["amount"] == {"amount": 0, "currency": "RUB"}
        assert params["mode"] == "setup", "nothing is charged: Stripe only saves the card"
        assert params["metadata"]["purpose"] == "card_update"
        assert "line_items" not in params
        standin.complete_setup_session(session_id, payment_method="pm_new_card")
        await completed(suite, standin, session_id)
        await wait_for_payment(user, checkout["payment_id"], "succeeded")

        end = end_of(subscription)
        assert (await run_jobs(suite, end - timedelta(minutes=30)))["renew_due_subscriptions"] == 1
        assert charged_methods(standin) == ["pm_new_card"]
        renewed = await user.subscription(subscription["id"])
        assert end_of(renewed) == add_months(end, 1)

    async def test_in_grace_a_payment_session_pays_the_renewal_and_saves_the_card(
        self, suite: Suite, standin: StripeStandin
    ) -> None:
        user = suite.as_user()
        subscription = await subscribed(suite, standin, user)
        # Its renewal was declined and the period ended an hour ago: in grace.
        now = clock.now()
        old_end = (now - timedelta(hours=1)).replace(microsecond=0)
        await suite.execute(
            "UPDATE subscription SET status = 'grace', current_period_end = :end,"
            " grace_until = :until, renewal_attempts = 1, dunning_started_at = :started,"
            " next_renewal_at = :retry WHERE id = :id",
            end=old_end,
            until=old_end + timedelta(days=2),
            started=old_end - timedelta(hours=1),
            retry=now + timedelta(minutes=30),
            id=subscription["id"],
        )

        checkout = await update(user, subscription["id"])
        session_id, params = last_session(standin)
        assert (checkout["purpose"], checkout["amount"]["amount"]) == ("renewal", 59900)
        assert params["mode"] == "payment"
        assert params["line_items"][0]["price_data"]["unit_amount"] == "59900"
        assert params["payment_intent_data"]["setup_future_usage"] == "off_session"
        standin.complete_session(session_id, payment_method="pm_new_card")
        await completed(suite, standin, session_id)
        active = await user.wait_for_subscription(subscription["id"], "active")

        assert datetime.fromisoformat(active["current_period_start"]) == old_end
        assert end_of(active) == add_months(old_end, 1)
        assert (await run_jobs(suite, end_of(active) - timedelta(minutes=30)))[
            "renew_due_subscriptions"
        ] == 1
        assert charged_methods(standin) == ["pm_new_card"], "the retry was not charged"
