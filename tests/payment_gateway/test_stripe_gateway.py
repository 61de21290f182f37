"""The gateway with Stripe as its provider: a Stripe-signed webhook becomes payment.succeeded."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import httpx
import orjson
import pytest
import stripe

from payment_gateway.app import create_app
from payment_gateway.providers.stripe_provider import StripeProvider
from shared import events
from shared.auth import AuthSettings, mint_service_token
from shared.broker import Broker
from shared.settings import ServiceSettings
from tests import support
from tests.payment_gateway.conftest import (
    BASE_URL,
    gateway_settings,
    payment_body,
    truncate,
    webhooks_processed,
)
from tests.payment_gateway.stripe_standin import StripeStandin, sign_webhook, webhook_body
from tests.shared.messaging import Probe

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")

SECRET = "whsec_gateway_test"


@pytest.fixture
def standin(monkeypatch: pytest.MonkeyPatch) -> Iterator[StripeStandin]:
    monkeypatch.setattr(stripe, "enable_telemetry", False)
    with StripeStandin() as server:
        yield server


@pytest.fixture
async def client(
    standin: StripeStandin, service_settings: ServiceSettings, broker: Broker
) -> AsyncIterator[tuple[httpx.AsyncClient, Probe]]:
    provider = StripeProvider(
        standin.api_key, SECRET, api_base=standin.url, http_client=stripe.HTTPXClient()
    )
    settings = gateway_settings(service_settings, provider="stripe", sandbox_enabled=False)
    app = create_app(settings, stripe=provider)
    async with app.router.lifespan_context(app):
        await app.state.resources.broker.wait_connected()
        await truncate(app)
        probe = await Probe.bind_many(broker, ("payment.*",))
        token = mint_service_token(AuthSettings(), "billing_api")
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app),
            base_url=BASE_URL,
            headers={"Authorization": f"Bearer {token}"},
        ) as http:
            http.app = app  # type: ignore[attr-defined]
            yield http, probe
        await probe.close()
    await provider.aclose()


class TestStripeCheckout:
    async def test_signed_checkout_completed_webhook_publishes_payment_succeeded(
        self, client: tuple[httpx.AsyncClient, Probe], standin: StripeStandin
    ) -> None:
        http, probe = client
        created = (await http.post("/internal/v1/payments", json=payment_body())).json()
        assert created["provider"] == "stripe"
        session_id = created["provider_ref"]
        assert created["checkout_url"]
        standin.complete_session(session_id)
        session = standin.object(session_id)
        body = webhook_body("checkout.session.completed", session, event_id="evt_completed_1")

        response = await http.post(
            "/webhooks/stripe",
            content=body,
            headers={"Stripe-Signature": sign_webhook(body, SECRET, int(time.time()))},
        )
        assert response.status_code == 200
        assert response.json() == {"received": True, "duplicate": False}

        await webhooks_processed(http.app)  # type: ignore[attr-defined]
        await support.outbox_published(http.app.state.resources.engine)  # type: ignore[attr-defined]
        [event] = await probe.drain()
        assert event.type == "payment.succeeded"
        assert str(event.data.payment_id) == created["payment_id"]  # type: ignore[attr-defined]
        assert event.data.payment_method_ref  # type: ignore[attr-defined]

    async def test_setup_checkout_webhook_succeeds_with_the_setup_intents_method(
        self, client: tuple[httpx.AsyncClient, Probe], standin: StripeStandin
    ) -> None:
        http, probe = client
        body = payment_body(amount=0, currency="EUR")
        created = (await http.post("/internal/v1/payments", json=body)).json()
        assert (created["status"], created["amount"]) == ("pending", 0)
        [session_call] = standin.requests_to("POST", "/v1/checkout/sessions")
        assert session_call.params["mode"] == "setup"
        assert (
            session_call.params["setup_intent_data"]["metadata"]["payment_id"]
            == (created["payment_id"])
        )
        session_id = created["provider_ref"]
        standin.complete_setup_session(session_id, payment_method="pm_trial_visa")
        event_body = webhook_body(
            "checkout.session.completed", standin.object(session_id), event_id="evt_setup_1"
        )

        response = await http.post(
            "/webhooks/stripe",
            content=event_body,
            headers={"Stripe-Signature": sign_webhook(event_body, SECRET, int(time.time()))},
        )

        assert response.json() == {"received": True, "duplicate": False}
        await webhooks_processed(http.app)  # type: ignore[attr-defined]
        await support.outbox_published(http.app.state.resources.engine)  # type: ignore[attr-defined]
        [event] = await probe.drain()
        assert event.type == "payment.succeeded"
        data = event.data
        assert isinstance(data, events.PaymentSucceeded)
        assert (str(data.payment_id), data.amount.amount) == (created["payment_id"], 0)
        assert data.payment_method_ref == "pm_trial_visa"

        renewal = await http.post(
            "/internal/v1/payments",
            json=payment_body(
                customer=body["customer"],
                currency="EUR",
                mode="off_session",
                payment_method_ref="pm_trial_visa",
            ),
        )
        assert renewal.json()["status"] == "succeeded"
        [charge_call] = standin.requests_to("POST", "/v1/payment_intents")
        assert charge_call.params["customer"] == standin.object(session_id)["customer"]

    async def test_refresh_reads_a_completed_setup_session_without_its_webhook(
        self, client: tuple[httpx.AsyncClient, Probe], standin: StripeStandin
    ) -> None:
        http, _ = client
        created = (await http.post("/internal/v1/payments", json=payment_body(amount=0))).json()
        standin.complete_setup_session(created["provider_ref"], payment_method="pm_trial_visa")

        refreshed = await http.get(
            f"/internal/v1/payments/{created['payment_id']}", params={"refresh": "true"}
        )

        body = refreshed.json()
        assert (body["status"], body["amount"]) == ("succeeded", 0)
        assert body["payment_method_ref"] == "pm_trial_visa"

    async def test_webhook_signed_with_another_secret_is_refused(
        self, client: tuple[httpx.AsyncClient, Probe]
    ) -> None:
        http, _ = client
        body = orjson.dumps({"id": "evt_x", "type": "checkout.session.completed"})
        response = await http.post(
            "/webhooks/stripe",
            content=body,
            headers={"Stripe-Signature": sign_webhook(body, "whsec_other", int(time.time()))},
        )
        assert response.status_code == 400

    async def test_sandbox_is_not_served_when_stripe_is_the_provider(
        self, client: tuple[httpx.AsyncClient, Probe]
    ) -> None:
        http, _ = client
        response = await http.post("/sandbox/checkout/cs_sb_x/pay", json={"card_number": "4242"})
        assert response.status_code == 404


class TestStripeCards:
    async def test_a_paid_checkout_reports_its_card_and_a_lost_card_later_is_declined_hard(
        self, client: tuple[httpx.AsyncClient, Probe], standin: StripeStandin
    ) -> None:
        http, probe = client
        standin.add_card("pm_card_visa", brand="visa", last4="1881", exp_month=5, exp_year=2030)
        body = payment_body()
        created = (await http.post("/internal/v1/payments", json=body)).json()
        standin.complete_session(created["provider_ref"])
        event_body = webhook_body(
            "checkout.session.completed",
            standin.object(created["provider_ref"]),
            event_id="evt_card_1",
        )
        await http.post(
            "/webhooks/stripe",
            content=event_body,
            headers={"Stripe-Signature": sign_webhook(event_body, SECRET, int(time.time()))},
        )
        await webhooks_processed(http.app)  # type: ignore[attr-defined]
        standin.declining_payment_methods["pm_card_visa"] = "lost_card"

        renewal = await http.post(
            "/internal/v1/payments",
            json=payment_body(
                customer=body["customer"], mode="off_session", payment_method_ref="pm_card_visa"
            ),
        )

        card = {"brand": "visa", "last4": "1881", "exp_month": 5, "exp_year": 2030}
        paid = (await http.get(f"/internal/v1/payments/{created['payment_id']}")).json()
        assert paid["card"] == card
        assert (renewal.json()["status"], renewal.json()["hard_decline"]) == ("failed", True)
        await support.outbox_published(http.app.state.resources.engine)  # type: ignore[attr-defined]
        succeeded, failed = sorted(await probe.drain(), key=lambda e: e.type, reverse=True)
        assert isinstance(succeeded.data, events.PaymentSucceeded)
        assert succeeded.data.card == events.CardSummary.model_validate(card)
        assert isinstance(failed.data, events.PaymentFailed)
        assert (failed.data.failure_code, failed.data.hard_decline) == ("lost_card", True)
