"""POST /internal/v1/payments/off-session/batch: many renewals charged in one request."""

from __future__ import annotations

import asyncio
from uuid import uuid4

import httpx

from tests.payment_gateway.conftest import Gateway
from tests.payment_gateway.test_payments_api import count, settle_events, wait_for_status

BATCH_URL = "/internal/v1/payments/off-session/batch"


async def saved_method(gateway: Gateway, card: str) -> tuple[str, str]:
    """(customer id, saved method) after a checkout paid with ``card`` that saved it."""
    customer = str(uuid4())
    created = (await gateway.create_payment(customer={"id": customer})).json()
    await gateway.pay(created["checkout_url"], card)
    final = await wait_for_status(gateway.client, created["payment_id"], "succeeded")
    await settle_events(gateway)
    return customer, str(final["payment_method_ref"])


def charge(customer: str, method: str, **overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "payment_id": str(uuid4()),
        "customer": {"id": customer, "email": "viewer@example.com"},
        "amount": 29900,
        "currency": "RUB",
        "description": "Premium: renewal",
        "payment_method_ref": method,
        "metadata": {"purpose": "renewal"},
    }
    body.update(overrides)
    return body


async def post_batch(client: httpx.AsyncClient, charges: list[dict[str, object]]) -> httpx.Response:
    return await client.post(BATCH_URL, json={"charges": charges})


class TestChargeMany:
    async def test_each_charge_is_answered_in_order_with_its_own_outcome(
        self, gateway: Gateway
    ) -> None:
        good_customer, good = await saved_method(gateway, "4242424242424242")
        bad_customer, bad = await saved_method(gateway, "4000000000000341")
        charges = [
            charge(good_customer, good),
            charge(bad_customer, bad),
            charge(str(uuid4()), good),  # another customer's card
            charge(good_customer, good, amount=10000),
        ]

        response = await post_batch(gateway.client, charges)

        assert response.status_code == 200, response.text
        results = response.json()["results"]
        assert [r["payment_id"] for r in results] == [c["payment_id"] for c in charges]
        assert [r["status_code"] for r in results] == [201, 201, 201, 201]
        assert [r["payment"]["status"] for r in results] == [
            "succeeded",
            "failed",
            "failed",
            "succeeded",
        ]
        assert results[1]["payment"]["failure_code"] == "card_declined"
        assert results[3]["payment"]["amount"] == 10000
        events = await settle_events(gateway)
        assert sorted(events) == sorted(
            [
                ("payment.succeeded", str(charges[0]["payment_id"])),
                ("payment.failed", str(charges[1]["payment_id"])),
                ("payment.failed", str(charges[2]["payment_id"])),
                ("payment.succeeded", str(charges[3]["payment_id"])),
            ]
        )

    async def test_a_repeated_batch_answers_the_first_outcomes_and_charges_nothing_again(
        self, gateway: Gateway
    ) -> None:
        good_customer, good = await saved_method(gateway, "4242424242424242")
        bad_customer, bad = await saved_method(gateway, "4000000000000341")
        charges = [charge(good_customer, good), charge(bad_customer, bad)]
        first = (await post_batch(gateway.client, charges)).json()["results"]
        await settle_events(gateway)
        charged = await count(gateway, "gateway.sandbox_charge")

        again = (await post_batch(gateway.client, charges)).json()["results"]

        assert [r["status_code"] for r in again] == [200, 200]
        assert [r["payment"] for r in again] == [r["payment"] for r in first]
        assert await count(gateway, "gateway.sandbox_charge") == charged
        assert await settle_events(gateway) == []

    async def test_two_identical_batches_at_once_charge_each_payment_once(
        self, gateway: Gateway
    ) -> None:
        customer, method = await saved_method(gateway, "4242424242424242")
        charges = [charge(customer, method) for _ in range(5)]
        charged = await count(gateway, "gateway.sandbox_charge")

        first, second = await asyncio.gather(
            post_batch(gateway.client, charges), post_batch(gateway.client, list(reversed(charges)))
        )

        assert first.status_code == second.status_code == 200
        codes = [r["status_code"] for r in first.json()["results"] + second.json()["results"]]
        assert sorted(codes) == [200] * 5 + [201] * 5
        assert await count(gateway, "gateway.sandbox_charge") == charged + 5
        events = await settle_events(gateway)
        assert sorted(events) == sorted(
            ("payment.succeeded", str(c["payment_id"])) for c in charges
        )

    async def test_a_payment_charged_alone_is_answered_from_its_first_charge(
        self, gateway: Gateway
    ) -> None:
        customer, method = await saved_method(gateway, "4242424242424242")
        single = charge(customer, method)
        alone = await gateway.create_payment(
            **{k: v for k, v in single.items() if k != "payment_method_ref"},
            mode="off_session",
            payment_method_ref=method,
            save_payment_method=False,
            success_url=None,
            cancel_url=None,
        )
        assert alone.status_code == 201, alone.text
        await settle_events(gateway)

        result = (await post_batch(gateway.client, [single])).json()["results"][0]

        assert result["status_code"] == 200
        assert result["payment"] == alone.json()
        assert await settle_events(gateway) == []

    async def test_a_reused_payment_id_fails_only_its_own_charge(self, gateway: Gateway) -> None:
        customer, method = await saved_method(gateway, "4242424242424242")
        first = charge(customer, method)
        await post_batch(gateway.client, [first])
        await settle_events(gateway)
        reused = {**first, "amount": 100}
        fresh = charge(customer, method)

        response = await post_batch(gateway.client, [reused, fresh])

        results = response.json()["results"]
        assert [r["status_code"] for r in results] == [409, 201]
        assert results[0]["error"]["error"] == "PaymentIdReused"
        assert results[0]["payment"] is None
        assert results[1]["payment"]["status"] == "succeeded"
        assert await settle_events(gateway) == [("payment.succeeded", fresh["payment_id"])]


class TestMalformedBatch:
    async def test_malformed_batches_are_refused_whole_and_charge_nothing(
        self, gateway: Gateway
    ) -> None:
        customer, method = await saved_method(gateway, "4242424242424242")
        one = charge(customer, method)
        charged = await count(gateway, "gateway.sandbox_charge")
        bodies: list[object] = [
            {"charges": []},
            {"charges": [charge(customer, method) for _ in range(201)]},
            {"charges": [one, dict(one)]},  # the same payment_id twice
            {"charges": [one, charge(customer, method, amount=0)]},
            {"charges": [one, charge(customer, method, amount=True)]},
            {"charges": [one, charge(customer, method, payment_method_ref="")]},
            {"charges": [one, {**charge(customer, method), "mode": "checkout"}]},
            {"charges": [{k: v for k, v in one.items() if k != "currency"}]},
            {"charges": one},
            [one],
        ]
        for body in bodies:
            response = await gateway.client.post(BATCH_URL, json=body)
            assert response.status_code == 422, (body, response.text)
        not_json = await gateway.client.post(
            BATCH_URL, content=b"{not json", headers={"Content-Type": "application/json"}
        )
        assert 400 <= not_json.status_code < 500
        assert await count(gateway, "gateway.sandbox_charge") == charged
        assert await count(gateway, "gateway.payment") == 1  # the checkout that saved the card

    async def test_only_our_services_may_charge(self, gateway: Gateway) -> None:
        customer, method = await saved_method(gateway, "4242424242424242")
        response = await gateway.anonymous.post(
            BATCH_URL, json={"charges": [charge(customer, method)]}
        )
        assert response.status_code == 401
