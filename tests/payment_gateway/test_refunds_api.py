from __future__ import annotations

import asyncio
from uuid import uuid4

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from tests.payment_gateway.conftest import Gateway
from tests.payment_gateway.test_payments_api import settle_events, wait_for_status


async def paid_payment(gateway: Gateway, amount: int = 29900) -> str:
    created = (await gateway.create_payment(amount=amount)).json()
    await gateway.pay(created["checkout_url"])
    await wait_for_status(gateway.client, created["payment_id"], "succeeded")
    await settle_events(gateway)
    return str(created["payment_id"])


async def refund(
    gateway: Gateway, payment_id: str, amount: int, refund_id: str | None = None
) -> httpx.Response:
    return await gateway.client.post(
        "/internal/v1/refunds",
        json={
            "refund_id": refund_id or str(uuid4()),
            "payment_id": payment_id,
            "amount": amount,
            "reason": "changed my mind",
        },
    )


class TestCreateRefund:
    async def test_full_refund_marks_the_payment_refunded_and_publishes_once(
        self, gateway: Gateway
    ) -> None:
        payment_id = await paid_payment(gateway)
        response = await refund(gateway, payment_id, 29900)

        assert response.status_code == 201, response.text
        assert response.json()["status"] == "succeeded"
        assert response.json()["payment_status"] == "refunded"
        await gateway.deliver_webhooks()
        assert await settle_events(gateway) == [("refund.succeeded", payment_id)]

    async def test_partial_refunds_add_up_to_the_amount_and_no_further(
        self, gateway: Gateway
    ) -> None:
        payment_id = await paid_payment(gateway, amount=1000)
        first = await refund(gateway, payment_id, 400)
        second = await refund(gateway, payment_id, 600)
        third = await refund(gateway, payment_id, 1)

        assert first.json()["payment_status"] == "partially_refunded"
        assert second.json()["payment_status"] == "refunded"
        assert third.status_code == 409
        assert third.json()["error"] == "PaymentNotRefundable"

    async def test_refund_larger_than_what_is_left_is_refused(self, gateway: Gateway) -> None:
        payment_id = await paid_payment(gateway, amount=1000)
        await refund(gateway, payment_id, 700)
        response = await refund(gateway, payment_id, 301)
        assert response.status_code == 409
        assert response.json() == {
            "error": "RefundExceedsPayment",
            "detail": "at most 300 RUB can still be refunded",
        }

    async def test_concurrent_refunds_never_exceed_the_payment(self, gateway: Gateway) -> None:
        payment_id = await paid_payment(gateway, amount=1000)
        responses = await asyncio.gather(*(refund(gateway, payment_id, 300) for _ in range(6)))
        accepted = [r for r in responses if r.status_code == 201]
        assert len(accepted) == 3
        assert {r.status_code for r in responses} == {201, 409}

    async def test_same_refund_id_returns_the_same_refund(self, gateway: Gateway) -> None:
        payment_id = await paid_payment(gateway, amount=1000)
        refund_id = str(uuid4())
        first = await refund(gateway, payment_id, 500, refund_id)
        again = await refund(gateway, payment_id, 500, refund_id)
        other_amount = await refund(gateway, payment_id, 400, refund_id)
        assert first.json() == again.json()
        assert other_amount.status_code == 409
        async with gateway.app.state.resources.engine.connect() as conn:
            assert await conn.scalar(sa.text("SELECT count(*) FROM sandbox_refund")) == 1

    async def test_unpaid_payment_cannot_be_refunded(self, gateway: Gateway) -> None:
        created = (await gateway.create_payment()).json()
        response = await refund(gateway, created["payment_id"], 100)
        assert response.status_code == 409

    async def test_the_database_refuses_refunds_beyond_the_amount(self, gateway: Gateway) -> None:
        payment_id = await paid_payment(gateway, amount=1000)
        engine = gateway.app.state.resources.engine
        with pytest.raises(IntegrityError, match="ck_payment_refunds_within_amount"):
            async with engine.begin() as conn:
                await conn.execute(
                    sa.text("UPDATE payment SET refunded_amount = 1001 WHERE id = :id"),
                    {"id": payment_id},
                )


class TestGetRefund:
    async def test_refund_is_readable_by_id(self, gateway: Gateway) -> None:
        payment_id = await paid_payment(gateway, amount=1000)
        refund_id = str(uuid4())
        await refund(gateway, payment_id, 250, refund_id)
        response = await gateway.client.get(f"/internal/v1/refunds/{refund_id}")
        assert response.json()["amount"] == 250
        assert response.json()["status"] == "succeeded"

    async def test_unknown_refund_is_404(self, gateway: Gateway) -> None:
        response = await gateway.client.get(f"/internal/v1/refunds/{uuid4()}")
        assert response.status_code == 404
