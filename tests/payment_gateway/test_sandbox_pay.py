"""The sandbox's pay request: what it stores for the payment, the saved card and the webhook."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

import sqlalchemy as sa

from payment_gateway.sandbox.models import SandboxPaymentMethod, SandboxSession, SandboxWebhook
from tests.payment_gateway.conftest import Gateway
from tests.payment_gateway.test_webhooks import hold_deliveries


async def provider_side(gateway: Gateway, payment_id: str) -> dict[str, Any]:
    """What the sandbox holds about the payment: its session, saved cards and webhooks."""
    async with gateway.app.state.sandbox.sessions() as db:
        checkout = await db.scalar(
            sa.select(SandboxSession).where(SandboxSession.payment_id == UUID(payment_id))
        )
        assert checkout is not None
        methods = list(
            await db.scalars(
                sa.select(SandboxPaymentMethod).where(
                    SandboxPaymentMethod.customer_id == checkout.customer_id
                )
            )
        )
        hooks = list(await db.scalars(sa.select(SandboxWebhook)))
    return {"session": checkout, "methods": methods, "webhooks": hooks}


class TestPay:
    async def test_paying_saves_the_card_and_queues_one_signed_webhook_about_the_payment(
        self, gateway: Gateway
    ) -> None:
        hold_deliveries(gateway)
        created = (await gateway.create_payment()).json()

        response = await gateway.pay(created["checkout_url"], "4242 4242 4242 4242")

        assert response.json()["status"] == "succeeded"
        held = await provider_side(gateway, created["payment_id"])
        checkout, [method], [hook] = held["session"], held["methods"], held["webhooks"]
        assert (checkout.status, checkout.card_last4) == ("succeeded", "4242")
        assert checkout.payment_method_id == method.id
        assert method.id.startswith("pm_sb_")
        assert (method.card_last4, method.fails_off_session) == ("4242", False)
        assert hook.event_type == "checkout.session.completed"
        # Queued for delivery at once; the sender may already have tried it against the held
        # network (an attempt that failed), never delivered it.
        assert hook.delivered_at is None and hook.attempts <= 1
        assert hook.next_attempt_at >= hook.created_at
        assert hook.body == {
            "id": hook.id,
            "type": "checkout.session.completed",
            "created": int(hook.created_at.timestamp()),
            "data": {"object": {"id": checkout.id, "payment_id": created["payment_id"]}},
        }

    async def test_a_declined_card_saves_nothing_and_reports_the_failure(
        self, gateway: Gateway
    ) -> None:
        hold_deliveries(gateway)
        created = (await gateway.create_payment()).json()

        response = await gateway.pay(created["checkout_url"], "4000000000000002")

        assert response.json()["status"] == "failed"
        held = await provider_side(gateway, created["payment_id"])
        checkout, [hook] = held["session"], held["webhooks"]
        assert (checkout.status, checkout.failure_code) == ("failed", "card_declined")
        assert (checkout.payment_method_id, held["methods"]) == (None, [])
        assert hook.event_type == "checkout.session.failed"
        assert hook.body["data"]["object"]["payment_id"] == created["payment_id"]

    async def test_a_checkout_that_saves_no_card_stores_none(self, gateway: Gateway) -> None:
        hold_deliveries(gateway)
        created = (await gateway.create_payment(save_payment_method=False)).json()

        await gateway.pay(created["checkout_url"])

        held = await provider_side(gateway, created["payment_id"])
        assert (held["session"].status, held["session"].payment_method_id) == ("succeeded", None)
        assert held["methods"] == []
        assert len(held["webhooks"]) == 1

    async def test_paying_one_session_many_times_at_once_settles_it_once(
        self, gateway: Gateway
    ) -> None:
        hold_deliveries(gateway)
        created = (await gateway.create_payment()).json()

        answers = await asyncio.gather(
            *(gateway.pay(created["checkout_url"]) for _ in range(5)),
            gateway.pay(created["checkout_url"], "4000000000000002"),
        )

        statuses = {a.json()["status"] for a in answers}
        held = await provider_side(gateway, created["payment_id"])
        assert statuses == {held["session"].status}  # the first one decided for all
        assert len(held["webhooks"]) == 1
        assert len(held["methods"]) == (1 if held["session"].status == "succeeded" else 0)
