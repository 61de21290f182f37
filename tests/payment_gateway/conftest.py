"""The gateway app on the real database and broker, with its sandbox delivering webhooks to it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from payment_gateway.app import create_app
from payment_gateway.config import GatewaySettings
from shared.auth import AuthSettings, mint_service_token, mint_user_token
from shared.broker import Broker
from shared.settings import ServiceSettings
from tests import support
from tests.shared.messaging import Probe

GATEWAY_TABLES = (
    "payment",
    "refund",
    "webhook_event",
    "provider_customer",
    "provider_call",
    "sandbox_session",
    "sandbox_payment_method",
    "sandbox_charge",
    "sandbox_refund",
    "sandbox_dispute",
    "sandbox_webhook",
    "outbox",
    "inbox",
)
PAYMENT_EVENTS = ("payment.*", "refund.*")
BASE_URL = "http://gateway.test"


@dataclass
class Gateway:
    app: FastAPI
    client: httpx.AsyncClient  # with a service token
    anonymous: httpx.AsyncClient
    probe: Probe

    async def create_payment(self, **overrides: object) -> httpx.Response:
        return await self.client.post("/internal/v1/payments", json=payment_body(**overrides))

    async def pay(self, checkout_url: str, card: str = "4242424242424242") -> httpx.Response:
        session_id = checkout_url.split("?", 1)[0].rsplit("/", 1)[1]
        return await self.anonymous.post(
            f"/sandbox/checkout/{session_id}/pay", json={"card_number": card}
        )

    async def deliver_webhooks(self) -> int:
        """Deliver the sandbox's due webhooks, then wait until the gateway processed them."""
        delivered = int(await self.app.state.sandbox_sender.deliver_due())
        await webhooks_processed(self.app)
        return delivered

    async def events(self) -> list[tuple[str, str]]:
        """(type, payment_id) of everything published so far (and not read before)."""
        await support.outbox_published(self.app.state.resources.engine)
        return [(e.type, str(e.data.payment_id)) for e in await self.probe.drain()]  # type: ignore[attr-defined]


def payment_body(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "payment_id": str(uuid4()),
        "customer": {"id": str(uuid4()), "email": "viewer@example.com"},
        "amount": 29900,
        "currency": "RUB",
        "description": "Premium, 1 month",
        "mode": "checkout",
        "save_payment_method": True,
        "success_url": "http://cinema.test/paid",
        "cancel_url": "http://cinema.test/cancelled",
        "metadata": {"subscription_id": str(uuid4())},
    }
    body.update(overrides)
    return body


def gateway_settings(service_settings: ServiceSettings, **overrides: object) -> GatewaySettings:
    values: dict[str, Any] = {
        **service_settings.model_dump(),
        "public_url": BASE_URL,
        "sandbox_webhook_url": f"{BASE_URL}/webhooks/sandbox",
        # Every test client comes from one address: the limits have tests of their own.
        "rate_limits_enabled": False,
        **overrides,
    }
    return GatewaySettings(**values)


async def webhooks_processed(app: FastAPI, *, timeout: float = 10.0) -> None:
    """Wait until the gateway's webhook processor has worked off every stored webhook."""

    async def done() -> bool:
        async with app.state.resources.engine.connect() as conn:
            left = await conn.scalar(
                sa.text("SELECT count(*) FROM webhook_event WHERE processed_at IS NULL")
            )
        return bool(left == 0)

    await support.eventually(done, timeout=timeout)


async def truncate(app: FastAPI) -> None:
    await support.truncate(app.state.resources.engine, f"{', '.join(GATEWAY_TABLES)} CASCADE")


@pytest.fixture
async def gateway(service_settings: ServiceSettings, broker: Broker) -> AsyncIterator[Gateway]:
    app = create_app(gateway_settings(service_settings))
    async with app.router.lifespan_context(app):
        await app.state.resources.broker.wait_connected()
        await truncate(app)
        transport = httpx.ASGITransport(app)
        # The sandbox delivers its webhooks to this very app, as it would over the network.
        app.state.sandbox_sender.http = httpx.AsyncClient(transport=transport, base_url=BASE_URL)
        token = mint_service_token(AuthSettings(), "billing_api")
        probe = await Probe.bind_many(broker, PAYMENT_EVENTS)
        async with (
            httpx.AsyncClient(
                transport=transport,
                base_url=BASE_URL,
                headers={"Authorization": f"Bearer {token}"},
            ) as client,
            httpx.AsyncClient(transport=transport, base_url=BASE_URL) as anonymous,
        ):
            yield Gateway(app, client, anonymous, probe)
        await probe.close()
        await app.state.sandbox_sender.http.aclose()


def user_token() -> str:
    return mint_user_token(AuthSettings(), uuid4(), email="viewer@example.com")
