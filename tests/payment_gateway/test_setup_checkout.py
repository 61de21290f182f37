"""A zero-amount checkout that only saves the card (how billing starts a free trial), sandbox."""

from __future__ import annotations

import asyncio
from uuid import uuid4

import pytest

from shared import events
from tests import support
from tests.payment_gateway.conftest import Gateway, payment_body
from tests.payment_gateway.test_payments_api import count, settle_events, wait_for_status
from tests.payment_gateway.test_refunds_api import refund


async def published(gateway: Gateway) -> list[events.Envelope[events.EventPayload]]:
    await asyncio.sleep(0.3)  # let any duplicate work land before counting
    await support.outbox_published(gateway.app.state.resources.engine)
    return await gateway.probe.drain()


async def saved_card(gateway: Gateway, card: str) -> tuple[str, str, str]:
    """A completed setup checkout: (customer id, payment id, saved payment method ref)."""
    customer = str(uuid4())
    created = (await gateway.create_payment(customer={"id": customer}, amount=0)).json()
    await gateway.pay(created["checkout_url"], card)
    final = await wait_for_status(gateway.client, created["payment_id"], "succeeded")
    await settle_events(gateway)
    return customer, str(created["payment_id"]), str(final["payment_method_ref"])


async def charge_off_session(gateway: Gateway, customer: str, method: str) -> dict[str, object]:
    response = await gateway.create_payment(
        customer={"id": customer},
        mode="off_session",
        payment_method_ref=method,
        success_url=None,
        cancel_url=None,
    )
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


class TestCreateSetupCheckout:
    async def test_zero_amount_saving_the_card_opens_a_checkout(self, gateway: Gateway) -> None:
        response = await gateway.create_payment(amount=0, save_payment_method=True)

        assert response.status_code == 201, response.text
        body = response.json()
        assert (body["status"], body["amount"], body["provider"]) == ("pending", 0, "sandbox")
        assert body["checkout_url"].startswith("http://gateway.test/sandbox/checkout/cs_sb_")
        assert body["provider_ref"] == body["checkout_url"].rsplit("/", 1)[1]

    @pytest.mark.parametrize(
        "overrides",
        [
            {"save_payment_method": False},
            {"mode": "off_session", "payment_method_ref": "pm_sb_x"},
            {"amount": -1},
        ],
        ids=["without-saving", "off-session", "negative"],
    )
    async def test_zero_or_less_otherwise_is_refused_and_nothing_is_stored(
        self, gateway: Gateway, overrides: dict[str, object]
    ) -> None:
        response = await gateway.create_payment(**{"amount": 0, **overrides})

        assert response.status_code == 422
        assert response.json()["error"] == "ValidationError"
        assert await count(gateway, "payment") == 0
        assert await count(gateway, "sandbox_session") == 0

    async def test_same_payment_id_returns_the_same_setup_checkout(self, gateway: Gateway) -> None:
        body = payment_body(amount=0)
        first = await gateway.client.post("/internal/v1/payments", json=body)
        again = await asyncio.gather(
            *(gateway.client.post("/internal/v1/payments", json=body) for _ in range(3))
        )

        assert first.status_code == 201
        assert {r.status_code for r in again} == {200}
        assert {r.json()["checkout_url"] for r in again} == {first.json()["checkout_url"]}
        assert await count(gateway, "sandbox_session") == 1
        reused = await gateway.client.post("/internal/v1/payments", json={**body, "amount": 100})
        assert reused.status_code == 409


class TestCompleteSetupCheckout:
    async def test_saving_a_card_publishes_payment_succeeded_with_amount_0_and_the_method(
        self, gateway: Gateway
    ) -> None:
        created = (await gateway.create_payment(amount=0)).json()

        paid = await gateway.pay(created["checkout_url"])

        assert paid.json()["status"] == "succeeded"
        final = await wait_for_status(gateway.client, created["payment_id"], "succeeded")
        assert final["amount"] == 0
        assert str(final["payment_method_ref"]).startswith("pm_sb_")
        [event] = await published(gateway)
        assert event.type == "payment.succeeded"
        data = event.data
        assert isinstance(data, events.PaymentSucceeded)
        assert str(data.payment_id) == created["payment_id"]
        assert (data.amount.amount, data.amount.currency) == (0, "RUB")
        assert data.payment_method_ref == final["payment_method_ref"]

    async def test_the_saved_card_is_then_charged_off_session(self, gateway: Gateway) -> None:
        customer, _, method = await saved_card(gateway, "4242424242424242")

        charged = await charge_off_session(gateway, customer, method)

        assert (charged["status"], charged["amount"]) == ("succeeded", 29900)
        assert await settle_events(gateway) == [("payment.succeeded", charged["payment_id"])]

    async def test_card_0341_saves_but_the_later_charge_fails(self, gateway: Gateway) -> None:
        customer, _, method = await saved_card(gateway, "4000000000000341")

        charged = await charge_off_session(gateway, customer, method)

        assert (charged["status"], charged["failure_code"]) == ("failed", "card_declined")
        assert await settle_events(gateway) == [("payment.failed", charged["payment_id"])]

    async def test_declined_card_fails_the_setup(self, gateway: Gateway) -> None:
        created = (await gateway.create_payment(amount=0)).json()

        paid = await gateway.pay(created["checkout_url"], "4000000000000002")

        assert paid.json()["failure_code"] == "card_declined"
        final = await wait_for_status(gateway.client, created["payment_id"], "failed")
        assert final["payment_method_ref"] is None
        assert await settle_events(gateway) == [("payment.failed", created["payment_id"])]

    async def test_refund_of_a_setup_payment_is_refused_as_exceeding_the_amount(
        self, gateway: Gateway
    ) -> None:
        _, payment_id, _ = await saved_card(gateway, "4242424242424242")

        response = await refund(gateway, payment_id, 1)

        assert response.status_code == 409
        assert response.json()["error"] == "RefundExceedsPayment"
        assert await count(gateway, "refund") == 0
        status = await gateway.client.get(
            f"/internal/v1/payments/{payment_id}", params={"refresh": "true"}
        )
        assert (status.json()["status"], status.json()["refunded_amount"]) == ("succeeded", 0)
