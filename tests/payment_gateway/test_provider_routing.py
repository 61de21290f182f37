"""Several providers at once: a new checkout goes where its currency is routed; its refunds and
the renewals of the card it saved stay with the provider that took it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any
from uuid import uuid4

import pytest

from shared.broker import Broker
from shared.settings import ServiceSettings
from tests.payment_gateway.conftest import payment_body, webhooks_processed
from tests.payment_gateway.yookassa_standin import YooKassaStandin
from tests.payment_gateway.yookassa_support import YooKassaGateway, running, yookassa_settings

ROUTES = "RUB=yookassa,*=sandbox"


@pytest.fixture
def standin() -> Iterator[YooKassaStandin]:
    with YooKassaStandin() as server:
        yield server


@pytest.fixture
async def gateway(
    standin: YooKassaStandin, service_settings: ServiceSettings, broker: Broker
) -> AsyncIterator[YooKassaGateway]:
    settings = yookassa_settings(
        service_settings,
        standin,
        provider="sandbox",
        sandbox_enabled=True,
        provider_routes=ROUTES,
    )
    async with running(settings, broker, standin) as gw:
        yield gw


async def paid_in_the_sandbox(gateway: YooKassaGateway, **overrides: object) -> dict[str, Any]:
    created = await gateway.create_payment(**overrides)
    session_id = created["checkout_url"].rsplit("/", 1)[1]
    paid = await gateway.client.post(
        f"/sandbox/checkout/{session_id}/pay", json={"card_number": "4242424242424242"}
    )
    assert paid.status_code == 200, paid.text
    await gateway.app.state.sandbox_sender.deliver_due()
    await webhooks_processed(gateway.app)
    return await gateway.payment(created["payment_id"])


CUSTOMER = {"id": "3f2a9b1e-6c7d-4e8f-9a0b-1c2d3e4f5a6b", "email": "viewer@example.com"}


def renewal(paid: dict[str, Any], currency: str) -> dict[str, object]:
    return payment_body(
        customer=CUSTOMER,
        currency=currency,
        mode="off_session",
        payment_method_ref=paid["payment_method_ref"],
        save_payment_method=False,
        success_url=None,
        cancel_url=None,
    )


class TestNewCheckouts:
    async def test_roubles_go_to_yookassa_and_other_currencies_to_the_fallback(
        self, gateway: YooKassaGateway, standin: YooKassaStandin
    ) -> None:
        roubles = await gateway.create_payment(currency="RUB")
        euros = await gateway.create_payment(currency="EUR")

        assert (roubles["provider"], euros["provider"]) == ("yookassa", "sandbox")
        assert roubles["checkout_url"].startswith(standin.url)
        assert "/sandbox/checkout/" in euros["checkout_url"]
        [call] = standin.requests_to("POST", "/v3/payments")
        assert call.body["metadata"]["payment_id"] == roubles["payment_id"]


class TestWhatFollowsAPayment:
    async def test_a_renewal_is_charged_where_its_card_was_saved_whatever_the_route(
        self, gateway: YooKassaGateway, standin: YooKassaStandin
    ) -> None:
        saved_at_yookassa = await gateway.paid_checkout(currency="RUB", customer=CUSTOMER)
        saved_in_sandbox = await paid_in_the_sandbox(gateway, currency="EUR", customer=CUSTOMER)

        # Routed by currency, the first would go to the sandbox and the second to YooKassa.
        first = await gateway.client.post(
            "/internal/v1/payments", json=renewal(saved_at_yookassa, "EUR")
        )
        second = await gateway.client.post(
            "/internal/v1/payments", json=renewal(saved_in_sandbox, "RUB")
        )

        assert (first.json()["provider"], first.json()["status"]) == ("yookassa", "succeeded")
        assert (second.json()["provider"], second.json()["status"]) == ("sandbox", "succeeded")
        charges = [
            c for c in standin.requests_to("POST", "/v3/payments") if "payment_method_id" in c.body
        ]
        assert [c.body["metadata"]["payment_id"] for c in charges] == [first.json()["payment_id"]]

    async def test_a_batch_of_renewals_charges_each_card_at_its_own_provider(
        self, gateway: YooKassaGateway, standin: YooKassaStandin
    ) -> None:
        saved_at_yookassa = await gateway.paid_checkout(currency="RUB", customer=CUSTOMER)
        saved_in_sandbox = await paid_in_the_sandbox(gateway, currency="EUR", customer=CUSTOMER)
        charges = []
        for paid, currency in ((saved_at_yookassa, "RUB"), (saved_in_sandbox, "EUR")):
            body = renewal(paid, currency)
            charges.append(
                {
                    key: body[key]
                    for key in (
                        "payment_id",
                        "customer",
                        "amount",
                        "currency",
                        "description",
                        "payment_method_ref",
                    )
                }
            )

        response = await gateway.client.post(
            "/internal/v1/payments/off-session/batch", json={"charges": charges}
        )

        assert response.status_code == 200, response.text
        results = response.json()["results"]
        assert [(r["status_code"], r["payment"]["provider"]) for r in results] == [
            (201, "yookassa"),
            (201, "sandbox"),
        ]
        assert all(r["payment"]["status"] == "succeeded" for r in results)

    async def test_refunds_go_to_the_provider_that_took_the_payment(
        self, gateway: YooKassaGateway, standin: YooKassaStandin
    ) -> None:
        at_yookassa = await gateway.paid_checkout(currency="RUB", customer=CUSTOMER)
        in_sandbox = await paid_in_the_sandbox(gateway, currency="EUR", customer=CUSTOMER)

        answers = [
            await gateway.client.post(
                "/internal/v1/refunds",
                json={"refund_id": str(uuid4()), "payment_id": paid["payment_id"], "amount": 100},
            )
            for paid in (at_yookassa, in_sandbox)
        ]

        assert [a.json()["status"] for a in answers] == ["succeeded", "succeeded"]
        [call] = standin.requests_to("POST", "/v3/refunds")
        assert call.body["payment_id"] == at_yookassa["provider_ref"]
