from __future__ import annotations

import asyncio
import time
from uuid import uuid4

import httpx
import orjson
import pytest
import sqlalchemy as sa

from payment_gateway.providers import base, signatures
from payment_gateway.sandbox.models import SandboxWebhook
from tests.payment_gateway.conftest import Gateway
from tests.payment_gateway.test_payments_api import settle_events, wait_for_status

SECRET = "whsec_sandbox_dev_only_change_me"


def hold_deliveries(gateway: Gateway) -> None:
    """The sandbox's webhooks stay queued: the network to the gateway is down."""
    gateway.app.state.sandbox_sender.http = httpx.AsyncClient(
        transport=httpx.MockTransport(lambda request: httpx.Response(503))
    )


async def queued(gateway: Gateway, event_type: str) -> bytes:
    async with gateway.app.state.sandbox.sessions() as db:
        hook = await db.scalar(
            sa.select(SandboxWebhook)
            .where(SandboxWebhook.event_type == event_type)
            .order_by(SandboxWebhook.created_at.desc())
        )
        assert hook is not None, f"no {event_type} webhook was queued"
        return orjson.dumps(hook.body)


async def post_webhook(
    gateway: Gateway, body: bytes, *, secret: str = SECRET, at: int | None = None
) -> httpx.Response:
    header = signatures.sign(body, secret, at or int(time.time()))
    return await gateway.anonymous.post(
        "/webhooks/sandbox", content=body, headers={"Sandbox-Signature": header}
    )


async def stored_webhooks(gateway: Gateway) -> int:
    async with gateway.app.state.resources.engine.connect() as conn:
        return int(await conn.scalar(sa.text("SELECT count(*) FROM webhook_event")) or 0)


class TestDuplicates:
    async def test_same_webhook_ten_times_concurrently_changes_state_once(
        self, gateway: Gateway
    ) -> None:
        hold_deliveries(gateway)
        created = (await gateway.create_payment()).json()
        await gateway.pay(created["checkout_url"])
        body = await queued(gateway, "checkout.session.completed")

        responses = await asyncio.gather(*(post_webhook(gateway, body) for _ in range(10)))

        assert {r.status_code for r in responses} == {200}
        assert sum(not r.json()["duplicate"] for r in responses) == 1
        await wait_for_status(gateway.client, created["payment_id"], "succeeded")
        assert await stored_webhooks(gateway) == 1
        assert await settle_events(gateway) == [("payment.succeeded", created["payment_id"])]


class TestOrdering:
    async def test_refund_webhook_before_the_payment_webhook_ends_refunded(
        self, gateway: Gateway
    ) -> None:
        hold_deliveries(gateway)
        created = (await gateway.create_payment(amount=5000)).json()
        await gateway.pay(created["checkout_url"])
        paid_webhook = await queued(gateway, "checkout.session.completed")
        # Refunded at the provider (think: from its dashboard) before we heard of the payment.
        await gateway.app.state.sandbox.refund(
            base.RefundRequest(
                refund_id=uuid4(),
                payment_id=created["payment_id"],
                payment_provider_ref=created["provider_ref"],
                amount=5000,
                currency="RUB",
            )
        )
        refund_webhook = await queued(gateway, "refund.succeeded")

        assert (await post_webhook(gateway, refund_webhook)).status_code == 200
        assert (await post_webhook(gateway, paid_webhook)).status_code == 200

        final = await wait_for_status(gateway.client, created["payment_id"], "refunded")
        assert final["refunded_amount"] == 5000
        assert await settle_events(gateway) == [
            ("payment.succeeded", created["payment_id"]),
            ("refund.succeeded", created["payment_id"]),
        ]


class TestRejected:
    @pytest.mark.parametrize(
        "tamper",
        ["forged body", "wrong secret", "301 seconds old", "missing header", "not json"],
    )
    async def test_untrusted_webhook_is_400_and_nothing_is_stored(
        self, gateway: Gateway, tamper: str
    ) -> None:
        hold_deliveries(gateway)
        created = (await gateway.create_payment()).json()
        await gateway.pay(created["checkout_url"])
        body = await queued(gateway, "checkout.session.completed")
        now = int(time.time())

        if tamper == "forged body":
            header = signatures.sign(body, SECRET, now)
            body = body.replace(b"checkout.session.completed", b"checkout.session.expired")
            response = await gateway.anonymous.post(
                "/webhooks/sandbox", content=body, headers={"Sandbox-Signature": header}
            )
        elif tamper == "wrong secret":
            response = await post_webhook(gateway, body, secret="whsec_guess")
        elif tamper == "301 seconds old":
            response = await post_webhook(gateway, body, at=now - 301)
        elif tamper == "missing header":
            response = await gateway.anonymous.post("/webhooks/sandbox", content=body)
        else:
            response = await post_webhook(gateway, b"<xml>paid</xml>")

        assert response.status_code == 400
        assert response.json()["error"] == "WebhookRejected"
        assert await stored_webhooks(gateway) == 0
        status = (await gateway.client.get(f"/internal/v1/payments/{created['payment_id']}")).json()
        assert status["status"] == "pending"

    async def test_unknown_provider_is_404(self, gateway: Gateway) -> None:
        response = await gateway.anonymous.post("/webhooks/paypal", content=b"{}")
        assert response.status_code == 404


class TestDelivery:
    async def test_webhooks_are_retried_until_acknowledged(self, gateway: Gateway) -> None:
        sender = gateway.app.state.sandbox_sender
        working = sender.http
        hold_deliveries(gateway)
        created = (await gateway.create_payment()).json()
        await gateway.pay(created["checkout_url"])
        assert await gateway.deliver_webhooks() == 0

        async with gateway.app.state.sandbox.sessions() as db, db.begin():
            hook = await db.scalar(sa.select(SandboxWebhook))
            assert hook is not None
            assert hook.attempts >= 1
            assert hook.last_error == "HTTP 503: "
            hook.next_attempt_at = hook.created_at  # due again now
        sender.http = working

        await wait_for_status(gateway.client, created["payment_id"], "succeeded")
