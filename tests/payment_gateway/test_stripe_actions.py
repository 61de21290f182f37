"""Stripe renewals that need 3-D Secure, through the local Stripe stand-in: an off-session
PaymentIntent refused with ``authentication_required`` is ``requires_action`` (not failed) with
the gateway's confirmation page; the cardholder's confirmation settles it through Stripe's
webhook, and billing's cancel cancels the PaymentIntent unless it was confirmed first."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from uuid import uuid4

import httpx
import pytest
import stripe

from payment_gateway.app import create_app
from payment_gateway.providers import stripe_mapping as mapping
from payment_gateway.providers.base import ProviderStatus
from payment_gateway.providers.stripe_provider import StripeProvider
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
PUBLISHABLE = "pk_test_standin"
CARD_3DS = "pm_card_authenticationRequired"


@pytest.fixture
def standin(monkeypatch: pytest.MonkeyPatch) -> Iterator[StripeStandin]:
    monkeypatch.setattr(stripe, "enable_telemetry", False)
    with StripeStandin() as server:
        server.declining_payment_methods[CARD_3DS] = "authentication_required"
        yield server


@pytest.fixture
async def http(
    standin: StripeStandin, service_settings: ServiceSettings, broker: Broker
) -> AsyncIterator[httpx.AsyncClient]:
    provider = StripeProvider(
        standin.api_key,
        SECRET,
        api_base=standin.url,
        http_client=stripe.HTTPXClient(),
        public_url=BASE_URL,
    )
    settings = gateway_settings(
        service_settings,
        provider="stripe",
        sandbox_enabled=False,
        stripe_publishable_key=PUBLISHABLE,
    )
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
        ) as client:
            client.app = app  # type: ignore[attr-defined]
            client.probe = probe  # type: ignore[attr-defined]
            yield client
        await probe.close()
    await provider.aclose()


async def renewal(http: httpx.AsyncClient) -> dict[str, Any]:
    body = payment_body(
        mode="off_session",
        payment_method_ref=CARD_3DS,
        save_payment_method=False,
        success_url=None,
        cancel_url=None,
    )
    response = await http.post("/internal/v1/payments", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def published(http: httpx.AsyncClient) -> list[tuple[str, str]]:
    await webhooks_processed(http.app)  # type: ignore[attr-defined]
    await support.outbox_published(http.app.state.resources.engine)  # type: ignore[attr-defined]
    probe: Probe = http.probe  # type: ignore[attr-defined]
    return [(e.type, str(e.data.payment_id)) for e in await probe.drain()]  # type: ignore[attr-defined]


async def deliver(http: httpx.AsyncClient, event_type: str, obj: dict[str, Any]) -> None:
    body = webhook_body(event_type, obj, event_id=f"evt_{uuid4().hex}")
    response = await http.post(
        "/webhooks/stripe",
        content=body,
        headers={"Stripe-Signature": sign_webhook(body, SECRET, int(time.time()))},
    )
    assert response.status_code == 200, response.text


class TestAuthenticationRequired:
    async def test_the_off_session_charge_waits_at_the_gateways_confirmation_page(
        self, http: httpx.AsyncClient, standin: StripeStandin
    ) -> None:
        payment = await renewal(http)

        assert payment["status"] == "requires_action"
        assert payment["action_url"] == f"{BASE_URL}/stripe/actions/{payment['payment_id']}"
        intent = standin.object(payment["provider_ref"])
        assert intent["status"] == "requires_payment_method"
        [created] = standin.requests_to("POST", "/v1/payment_intents")
        assert (created.params["off_session"], created.params["confirm"]) == ("true", "true")
        page = await http.get(
            f"/stripe/actions/{payment['payment_id']}", headers={"Accept-Language": "en-GB"}
        )
        assert page.status_code == 200
        assert "https://js.stripe.com/v3/" in page.text and "confirmCardPayment" in page.text
        assert '<html lang="en">' in page.text and '"locale": "en"' in page.text  # Stripe's too
        assert intent["client_secret"] in page.text and PUBLISHABLE in page.text
        assert CARD_3DS in page.text  # confirmed with the same saved card
        assert await published(http) == [("payment.action_required", payment["payment_id"])]

    async def test_the_cardholders_confirmation_settles_it_through_stripes_webhook(
        self, http: httpx.AsyncClient, standin: StripeStandin
    ) -> None:
        payment = await renewal(http)
        standin.authenticate(payment["provider_ref"])

        await deliver(http, "payment_intent.succeeded", standin.object(payment["provider_ref"]))

        events = await published(http)
        assert events == [
            ("payment.action_required", payment["payment_id"]),
            ("payment.succeeded", payment["payment_id"]),
        ]
        read = (await http.get(f"/internal/v1/payments/{payment['payment_id']}")).json()
        assert (read["status"], read["action_url"]) == ("succeeded", None)

    async def test_billings_cancel_cancels_the_payment_intent_and_the_page_refuses(
        self, http: httpx.AsyncClient, standin: StripeStandin
    ) -> None:
        payment = await renewal(http)
        url = f"/internal/v1/payments/{payment['payment_id']}/cancel"

        cancelled = await http.post(url)
        again = await http.post(url)

        assert cancelled.json()["status"] == again.json()["status"] == "failed"
        assert standin.object(payment["provider_ref"])["status"] == "canceled"
        [cancel] = standin.requests_to(
            "POST", f"/v1/payment_intents/{payment['provider_ref']}/cancel"
        )
        assert cancel.idempotency_key == f"cancel-{payment['provider_ref']}"
        page = await http.get(f"/stripe/actions/{payment['payment_id']}?locale=en")
        assert page.status_code == 409 and "can no longer be confirmed" in page.text
        with pytest.raises(Exception, match="canceled"):
            standin.authenticate(payment["provider_ref"])
        assert await published(http) == [
            ("payment.action_required", payment["payment_id"]),
            ("payment.failed", payment["payment_id"]),
        ]

    async def test_a_payment_intent_confirmed_before_the_cancel_is_answered_succeeded(
        self, http: httpx.AsyncClient, standin: StripeStandin
    ) -> None:
        payment = await renewal(http)
        standin.authenticate(payment["provider_ref"])  # its webhook is still on its way

        cancelled = await http.post(f"/internal/v1/payments/{payment['payment_id']}/cancel")

        assert cancelled.json()["status"] == "succeeded"
        assert standin.object(payment["provider_ref"])["status"] == "succeeded"
        await deliver(http, "payment_intent.succeeded", standin.object(payment["provider_ref"]))
        events = await published(http)
        assert events.count(("payment.succeeded", payment["payment_id"])) == 1
        assert ("payment.failed", payment["payment_id"]) not in events


class TestMapping:
    def test_a_payment_intent_in_requires_action_gives_stripes_redirect_when_there_is_one(
        self,
    ) -> None:
        payment_id = uuid4()
        intent = stripe.PaymentIntent.construct_from(
            {
                "id": "pi_1",
                "object": "payment_intent",
                "status": "requires_action",
                "amount": 29900,
                "currency": "rub",
                "metadata": {"payment_id": str(payment_id)},
                "last_payment_error": None,
                "next_action": {
                    "type": "redirect_to_url",
                    "redirect_to_url": {"url": "https://hooks.stripe.com/3d_secure/x"},
                },
            },
            "sk_test",
        )
        without = stripe.PaymentIntent.construct_from(
            {**intent.to_dict(), "next_action": {"type": "use_stripe_sdk"}}, "sk_test"
        )

        assert mapping.intent_status(intent) is ProviderStatus.REQUIRES_ACTION
        assert mapping.action_url(intent, BASE_URL) == "https://hooks.stripe.com/3d_secure/x"
        assert mapping.action_url(without, BASE_URL) == f"{BASE_URL}/stripe/actions/{payment_id}"
