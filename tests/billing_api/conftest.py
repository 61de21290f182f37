"""billing_api wired to the real gateway (sandbox provider), database and broker.

The gateway app runs in-process; billing reaches it over an ASGI transport, the sandbox delivers
its webhooks to the gateway the same way, and billing's worker (consumer + relays) runs as tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from billing_api import demo
from billing_api.activation.handlers import make_consumer
from billing_api.app import create_app
from billing_api.config import BillingSettings
from billing_api.gateway import GatewayClient
from billing_api.models import Base
from shared.auth import AuthSettings, mint_user_token
from shared.broker import Broker
from shared.consumer import Consumer
from shared.outbox import OutboxRelay
from shared.settings import ServiceSettings
from tests import support
from tests.payment_gateway.conftest import gateway_settings
from tests.payment_gateway.conftest import truncate as truncate_gateway
from tests.shared.messaging import Probe

# Every table of billing's models (derived, so a new table is never left full between tests),
# and the messaging tables that live beside them.
BILLING_TABLES = (*(table.name for table in Base.metadata.sorted_tables), "outbox", "inbox")


@dataclass
class Suite:
    billing: FastAPI
    gateway: FastAPI
    http: httpx.AsyncClient  # billing, no token
    gateway_http: httpx.AsyncClient
    probe: Probe
    consumer: Consumer | None = None  # billing's consumer of the gateway's events
    seen: list[Any] = field(default_factory=list)

    def as_user(self, user_id: UUID | None = None, email: str = "viewer@example.com") -> User:
        user_id = user_id or uuid4()
        token = mint_user_token(AuthSettings(), user_id, email=email)
        return User(self, user_id, {"Authorization": f"Bearer {token}"})

    async def plan(self, code: str) -> dict[str, Any]:
        plans = (await self.http.get("/api/v1/plans")).json()["items"]
        return next(p for p in plans if p["code"] == code)

    async def pay(self, checkout_url: str, card: str = "4242424242424242") -> httpx.Response:
        session_id = checkout_url.split("?", 1)[0].rsplit("/", 1)[1]
        return await self.gateway_http.post(
            f"/sandbox/checkout/{session_id}/pay", json={"card_number": card}
        )

    async def events(self, event_type: str) -> list[Any]:
        """Every event of one type billing has published so far."""
        await support.outbox_published(self.billing.state.resources.engine)
        self.seen.extend(await self.probe.drain())
        return [e for e in self.seen if e.type == event_type]

    async def execute(self, sql: str, **params: Any) -> None:
        async with self.billing.state.resources.engine.begin() as conn:
            await conn.execute(sa.text(sql), params)

    async def scalar(self, sql: str, **params: Any) -> Any:
        async with self.billing.state.resources.engine.connect() as conn:
            return await conn.scalar(sa.text(sql), params)


@dataclass
class User:
    suite: Suite
    id: UUID
    headers: dict[str, str]

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.suite.http.get(path, headers=self.headers, **kwargs)

    async def post(self, path: str, json: Any = None, **kwargs: Any) -> httpx.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return await self.suite.http.post(path, json=json, headers=headers, **kwargs)

    async def subscription(self, subscription_id: str) -> dict[str, Any]:
        response = await self.get(f"/api/v1/subscriptions/{subscription_id}")
        result: dict[str, Any] = response.json()
        return result

    async def wait_for_subscription(self, subscription_id: str, status: str) -> dict[str, Any]:
        seen: dict[str, Any] = {}

        async def reached() -> bool:
            seen.update(await self.subscription(subscription_id))
            return bool(seen["status"] == status)

        await support.eventually(reached, timeout=15)
        return seen


async def truncate_billing(app: FastAPI) -> None:
    await support.truncate(app.state.resources.engine, f"{', '.join(BILLING_TABLES)} CASCADE")


@pytest.fixture
async def suite(service_settings: ServiceSettings, broker: Broker) -> AsyncIterator[Suite]:
    gateway = _gateway_app(service_settings)
    # Every test client comes from one address: the limits have tests of their own.
    billing = create_app(
        BillingSettings(**service_settings.model_dump(), rate_limits_enabled=False)
    )
    async with (
        gateway.router.lifespan_context(gateway),
        billing.router.lifespan_context(billing),
    ):
        await gateway.state.resources.broker.wait_connected()
        await billing.state.resources.broker.wait_connected()
        await truncate_gateway(gateway)
        await truncate_billing(billing)
        to_gateway = httpx.AsyncClient(
            transport=httpx.ASGITransport(gateway), base_url="http://gateway.test"
        )
        gateway.state.sandbox_sender.http = to_gateway
        billing.state.gateway = GatewayClient(to_gateway, "http://gateway.test", AuthSettings())
        async with billing.state.session_factory() as session, session.begin():
            await demo.load(session)
        probe = await Probe.bind_many(
            broker,
            ("entitlements.changed", "subscription.*", "purchase.*", "wallet.*", "gift.*"),
        )
        resources = billing.state.resources
        consumer = make_consumer(broker, resources.session_factory, billing.state.settings)
        await consumer.start()
        relay = asyncio.create_task(
            OutboxRelay(resources.engine, resources.broker, schema="billing").run()
        )
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(billing), base_url="http://billing.test"
        ) as http:
            yield Suite(billing, gateway, http, to_gateway, probe, consumer)
        relay.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await relay
        await consumer.stop()
        await support.delete_consumer_queues(broker, consumer.queues)
        await probe.close()
        await to_gateway.aclose()


def _gateway_app(service_settings: ServiceSettings) -> FastAPI:
    from payment_gateway.app import create_app as create_gateway

    return create_gateway(gateway_settings(service_settings))
