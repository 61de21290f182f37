"""The card a payment was made with (brand, last four, expiry) and hard declines, in the sandbox:
what the gateway answers and what its events say."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from shared import clock
from tests import support
from tests.payment_gateway.conftest import Gateway
from tests.payment_gateway.test_off_session_batch import charge, post_batch
from tests.payment_gateway.test_payments_api import wait_for_status

LOST_LATER = "4000099900000013"
EXPIRED_LATER = "4000099900000021"


async def published(gateway: Gateway) -> list[Any]:
    """Every event the gateway published since the last call, whole."""
    await gateway.deliver_webhooks()
    await support.outbox_published(gateway.app.state.resources.engine)
    return list(await gateway.probe.drain())


async def paid_checkout(
    gateway: Gateway, card: str, **expiry: int
) -> tuple[str, dict[str, Any], list[Any]]:
    """(customer, the payment as the gateway answers it, its events) for a paid checkout."""
    customer = str(uuid4())
    created = (await gateway.create_payment(customer={"id": customer})).json()
    session_id = created["checkout_url"].rsplit("/", 1)[1]
    paid = await gateway.anonymous.post(
        f"/sandbox/checkout/{session_id}/pay", json={"card_number": card, **expiry}
    )
    assert paid.status_code == 200, paid.text
    final = await wait_for_status(gateway.client, created["payment_id"], "succeeded")
    return customer, final, await published(gateway)


async def charge_once(gateway: Gateway, customer: str, method: str) -> dict[str, Any]:
    response = await gateway.create_payment(
        customer={"id": customer}, mode="off_session", payment_method_ref=method
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


class TestCardSummary:
    async def test_a_paid_checkout_tells_the_card_its_brand_last_four_and_expiry(
        self, gateway: Gateway
    ) -> None:
        _, payment, events = await paid_checkout(
            gateway, "5555 5555 5555 4444", exp_month=7, exp_year=2031
        )

        card = {"brand": "mastercard", "last4": "4444", "exp_month": 7, "exp_year": 2031}
        assert payment["card"] == card
        [succeeded] = [e for e in events if e.type == "payment.succeeded"]
        assert succeeded.data.card.model_dump() == card
        assert "5555555555554444" not in str(payment) + str(succeeded.data)

    async def test_without_an_expiry_the_card_expires_in_december_three_years_on(
        self, gateway: Gateway
    ) -> None:
        _, payment, _ = await paid_checkout(gateway, "2200000000000004")

        assert payment["card"] == {
            "brand": "mir",
            "last4": "0004",
            "exp_month": 12,
            "exp_year": clock.now().year + 3,
        }

    async def test_a_renewal_charge_tells_the_card_it_charged(self, gateway: Gateway) -> None:
        customer, payment, _ = await paid_checkout(
            gateway, "4242424242424242", exp_month=3, exp_year=29
        )

        renewal = await charge_once(gateway, customer, payment["payment_method_ref"])
        events = await published(gateway)

        card = {"brand": "visa", "last4": "4242", "exp_month": 3, "exp_year": 2029}
        assert (renewal["status"], renewal["card"]) == ("succeeded", card)
        [succeeded] = [e for e in events if e.type == "payment.succeeded"]
        assert succeeded.data.card.model_dump() == card

    async def test_an_expiry_already_over_is_declined_at_checkout(self, gateway: Gateway) -> None:
        created = (await gateway.create_payment()).json()
        session_id = created["checkout_url"].rsplit("/", 1)[1]

        paid = await gateway.anonymous.post(
            f"/sandbox/checkout/{session_id}/pay",
            json={"card_number": "4242424242424242", "exp_month": 1, "exp_year": 2020},
        )

        assert paid.json()["status"] == "failed"
        assert paid.json()["failure_code"] == "expired_card"

    async def test_the_hosted_forms_expiry_field_is_the_cards_expiry(
        self, gateway: Gateway
    ) -> None:
        created = (await gateway.create_payment()).json()
        session_id = created["checkout_url"].rsplit("/", 1)[1]

        page = await gateway.anonymous.post(
            f"/sandbox/checkout/{session_id}",
            content="card_number=4242+4242+4242+4242&expiry=09+%2F+33&cvc=123",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        other = (await gateway.create_payment()).json()["checkout_url"].rsplit("/", 1)[1]
        bad = await gateway.anonymous.post(
            f"/sandbox/checkout/{other}",
            content="card_number=4242424242424242&expiry=13%2F30&cvc=123",
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept-Language": "en",
            },
        )

        assert page.status_code == 303
        final = await wait_for_status(gateway.client, created["payment_id"], "succeeded")
        assert final["card"] == {"brand": "visa", "last4": "4242", "exp_month": 9, "exp_year": 2033}
        assert bad.status_code == 422
        assert "expiry" in bad.text


class TestHardDeclines:
    async def test_a_card_reported_lost_after_it_was_saved_is_declined_hard(
        self, gateway: Gateway
    ) -> None:
        customer, payment, _ = await paid_checkout(gateway, LOST_LATER)

        renewal = await charge_once(gateway, customer, payment["payment_method_ref"])
        events = await published(gateway)
        answer = (await gateway.client.get(f"/internal/v1/payments/{renewal['payment_id']}")).json()

        assert (renewal["status"], renewal["failure_code"]) == ("failed", "lost_card")
        assert renewal["hard_decline"] is True
        assert answer["hard_decline"] is True
        [failed] = [e for e in events if e.type == "payment.failed"]
        assert (failed.data.failure_code, failed.data.hard_decline) == ("lost_card", True)

    async def test_the_batch_answer_says_which_declines_are_hard(self, gateway: Gateway) -> None:
        expired_customer, expired = await _saved(gateway, EXPIRED_LATER)
        soft_customer, soft = await _saved(gateway, "4000000000000341")
        good_customer, good = await _saved(gateway, "4242424242424242")

        response = await post_batch(
            gateway.client,
            [
                charge(expired_customer, expired),
                charge(soft_customer, soft),
                charge(good_customer, good),
            ],
        )

        results = [r["payment"] for r in response.json()["results"]]
        assert [(r["status"], r["failure_code"], r["hard_decline"]) for r in results] == [
            ("failed", "expired_card", True),
            ("failed", "card_declined", False),
            ("succeeded", None, False),
        ]
        failed = {
            str(e.data.payment_id): e.data.hard_decline
            for e in await published(gateway)
            if e.type == "payment.failed"
        }
        assert failed == {results[0]["payment_id"]: True, results[1]["payment_id"]: False}

    async def test_a_saved_card_charged_after_its_expiry_is_declined_hard(
        self, gateway: Gateway
    ) -> None:
        customer, payment, _ = await paid_checkout(
            gateway, "4242424242424242", exp_month=1, exp_year=clock.now().year + 1
        )

        with clock.frozen(datetime(clock.now().year + 1, 2, 1, tzinfo=UTC)):
            renewal = await charge_once(gateway, customer, payment["payment_method_ref"])

        assert (renewal["failure_code"], renewal["hard_decline"]) == ("expired_card", True)

    async def test_stripes_lost_stolen_and_expired_numbers_are_declined_at_checkout(
        self, gateway: Gateway
    ) -> None:
        codes = []
        for card in ("4000000000009987", "4000000000009979", "4000000000000069"):
            created = (await gateway.create_payment()).json()
            codes.append((await gateway.pay(created["checkout_url"], card)).json()["failure_code"])

        assert codes == ["lost_card", "stolen_card", "expired_card"]


async def _saved(gateway: Gateway, card: str) -> tuple[str, str]:
    customer, payment, _ = await paid_checkout(gateway, card)
    return customer, str(payment["payment_method_ref"])
