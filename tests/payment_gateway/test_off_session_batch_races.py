"""Bulk renewal charges racing each other and the single endpoint, a charge the provider made
but whose answer was lost, and a saved method the sandbox never issued."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from uuid import UUID

import httpx
import pytest

from payment_gateway.providers import base
from tests.payment_gateway.conftest import Gateway
from tests.payment_gateway.test_off_session_batch import charge, post_batch, saved_method
from tests.payment_gateway.test_payments_api import count, settle_events


async def charge_alone(gateway: Gateway, body: dict[str, object]) -> httpx.Response:
    """The same charge through the single endpoint."""
    return await gateway.create_payment(
        **{k: v for k, v in body.items() if k != "payment_method_ref"},
        mode="off_session",
        payment_method_ref=body["payment_method_ref"],
        save_payment_method=False,
        success_url=None,
        cancel_url=None,
    )


class TestRaces:
    async def test_overlapping_batches_and_single_charges_at_once_charge_each_payment_once(
        self, gateway: Gateway
    ) -> None:
        customer, method = await saved_method(gateway, "4242424242424242")
        charged = await count(gateway, "gateway.sandbox_charge")
        paid: list[str] = []
        for _ in range(3):
            charges = [charge(customer, method) for _ in range(8)]
            paid += [str(c["payment_id"]) for c in charges]
            answers = await asyncio.gather(
                post_batch(gateway.client, charges[:6]),
                post_batch(gateway.client, list(reversed(charges[2:]))),
                post_batch(gateway.client, charges[1::2]),
                charge_alone(gateway, charges[3]),
                charge_alone(gateway, charges[7]),
                charge_alone(gateway, {**charges[4], "currency": "USD"}),
            )

            assert all(a.status_code in (200, 201) for a in answers[:5]), [a.text for a in answers]
            batches = [r for a in answers[:3] for r in a.json()["results"]]
            reused = [r for r in batches if r["payment_id"] == charges[4]["payment_id"]]
            others = [r for r in batches if r not in reused]
            assert {r["status_code"] for r in others} <= {200, 201}
            assert all(r["payment"]["status"] == "succeeded" for r in others)
            # charges[4] is made once, by whichever of its four requests came first.
            assert answers[5].status_code in (201, 409)
            assert sum(r["status_code"] == 201 for r in reused) == (answers[5].status_code == 409)

        assert await count(gateway, "gateway.sandbox_charge") == charged + 24
        events = await settle_events(gateway)
        assert sorted(events) == sorted(("payment.succeeded", p) for p in paid)


class TestLostProviderAnswer:
    async def test_a_charge_made_but_answered_as_an_error_is_recorded_by_the_retry(
        self, gateway: Gateway, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        customer, method = await saved_method(gateway, "4242424242424242")
        lost, kept = charge(customer, method), charge(customer, method)
        sandbox = gateway.app.state.providers.by_name["sandbox"]
        charge_many = sandbox.charge_off_session_many

        async def answer_lost(
            requests: Sequence[base.OffSessionRequest],
        ) -> list[base.ProviderPayment | base.ProviderError]:
            """Charged at the provider, but its answer for ``lost`` never came back."""
            answers = await charge_many(requests)
            return [
                base.ProviderError("timed out")
                if r.payment_id == UUID(str(lost["payment_id"]))
                else a
                for r, a in zip(requests, answers, strict=True)
            ]

        monkeypatch.setattr(sandbox, "charge_off_session_many", answer_lost)
        first = (await post_batch(gateway.client, [lost, kept])).json()["results"]
        monkeypatch.undo()
        assert [r["status_code"] for r in first] == [502, 201]
        await gateway.deliver_webhooks()  # the provider's webhook for it finds no payment yet
        charged = await count(gateway, "gateway.sandbox_charge")

        again = (await post_batch(gateway.client, [lost, kept])).json()["results"]

        assert [r["status_code"] for r in again] == [201, 200]
        assert again[0]["payment"]["status"] == "succeeded"
        assert await count(gateway, "gateway.sandbox_charge") == charged, "not charged again"
        await gateway.deliver_webhooks()
        assert sorted(await settle_events(gateway)) == sorted(
            [("payment.succeeded", lost["payment_id"]), ("payment.succeeded", kept["payment_id"])]
        )


class TestUnknownMethod:
    async def test_a_long_method_ref_the_sandbox_never_issued_fails_only_its_own_charge(
        self, gateway: Gateway
    ) -> None:
        customer, method = await saved_method(gateway, "4242424242424242")
        unknown = charge(customer, "pm_" + "x" * 200)  # the gateway takes refs up to 255
        fine = charge(customer, method)

        response = await post_batch(gateway.client, [unknown, fine])

        assert response.status_code == 200, response.text
        results = response.json()["results"]
        assert [r["status_code"] for r in results] == [201, 201]
        assert results[0]["payment"]["status"] == "failed"
        assert results[0]["payment"]["failure_code"] == "payment_method_not_found"
        assert results[1]["payment"]["status"] == "succeeded"
        alone = await charge_alone(gateway, charge(customer, "pm_" + "y" * 200))
        assert alone.status_code == 201, alone.text
        assert alone.json()["failure_code"] == "payment_method_not_found"
