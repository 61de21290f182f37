"""The gateway with YooKassa configured against the local stand-in, for the YooKassa tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import sqlalchemy as sa
from fastapi import FastAPI

from payment_gateway.app import create_app
from payment_gateway.config import GatewaySettings
from shared.auth import AuthSettings, mint_service_token
from shared.broker import Broker
from shared.settings import ServiceSettings
from tests import support
from tests.payment_gateway.conftest import (
    BASE_URL,
    PAYMENT_EVENTS,
    gateway_settings,
    payment_body,
    truncate,
    webhooks_processed,
)
from tests.payment_gateway.yookassa_standin import SUCCESS_CARD, YooKassaStandin
from tests.shared.messaging import Probe


def yookassa_settings(
    service_settings: ServiceSettings, standin: YooKassaStandin, **overrides: object
) -> GatewaySettings:
    values: dict[str, object] = {
        "provider": "yookassa",
        "sandbox_enabled": False,
        "yookassa_shop_id": standin.shop_id,
        "yookassa_secret_key": standin.secret_key,
        "yookassa_api_base": standin.api_base,
        **overrides,
    }
    return gateway_settings(service_settings, **values)


@dataclass
class YooKassaGateway:
    app: FastAPI
    client: httpx.AsyncClient  # with a service token
    probe: Probe
    standin: YooKassaStandin

    async def create_payment(self, **overrides: object) -> dict[str, Any]:
        response = await self.client.post("/internal/v1/payments", json=payment_body(**overrides))
        assert response.status_code == 201, response.text
        answer: dict[str, Any] = response.json()
        return answer

    async def payment(self, payment_id: str, *, refresh: bool = False) -> dict[str, Any]:
        response = await self.client.get(
            f"/internal/v1/payments/{payment_id}", params={"refresh": str(refresh).lower()}
        )
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    async def paid_checkout(self, card: str = SUCCESS_CARD, **overrides: object) -> dict[str, Any]:
        """A checkout the payer paid with ``card``, its payment.succeeded notification processed."""
        created = await self.create_payment(**overrides)
        self.standin.pay(created["provider_ref"], card)
        response = await self.standin.notify(self.app, "payment.succeeded", created["provider_ref"])
        assert response.status_code == 200, response.text
        await webhooks_processed(self.app)
        return await self.payment(created["payment_id"])

    async def events(self) -> list[tuple[str, str]]:
        """(type, payment_id) of everything published so far (and not read before)."""
        await support.outbox_published(self.app.state.resources.engine)
        return [(e.type, str(e.data.payment_id)) for e in await self.probe.drain()]  # type: ignore[attr-defined]

    async def stored_notifications(self) -> int:
        async with self.app.state.resources.engine.connect() as conn:
            count = await conn.scalar(
                sa.text("SELECT count(*) FROM webhook_event WHERE provider = 'yookassa'")
            )
        return int(count or 0)


@asynccontextmanager
async def running(
    settings: GatewaySettings, broker: Broker, standin: YooKassaStandin
) -> AsyncIterator[YooKassaGateway]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        await app.state.resources.broker.wait_connected()
        await truncate(app)
        probe = await Probe.bind_many(broker, PAYMENT_EVENTS)
        token = mint_service_token(AuthSettings(), "billing_api")
        transport = httpx.ASGITransport(app)
        if settings.sandbox_on:
            app.state.sandbox_sender.http = httpx.AsyncClient(
                transport=transport, base_url=BASE_URL
            )
        async with httpx.AsyncClient(
            transport=transport, base_url=BASE_URL, headers={"Authorization": f"Bearer {token}"}
        ) as client:
            yield YooKassaGateway(app, client, probe, standin)
        await probe.close()
        if settings.sandbox_on:
            await app.state.sandbox_sender.http.aclose()
