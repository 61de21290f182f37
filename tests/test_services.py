"""Every service's app factory builds, connects to the database and broker, and documents itself."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from access_api.app import create_app as access_app
from access_api.config import AccessSettings
from billing_api.app import create_app as billing_app
from billing_api.config import BillingSettings
from notifier.app import create_app as notifier_app
from notifier.config import NotifierSettings
from payment_gateway.app import create_app as gateway_app
from payment_gateway.config import GatewaySettings
from shared.settings import ServiceSettings

FACTORIES: dict[str, tuple[Callable[[Any], FastAPI], type[ServiceSettings]]] = {
    "billing_api": (billing_app, BillingSettings),
    "payment_gateway": (gateway_app, GatewaySettings),
    "access_api": (access_app, AccessSettings),
    "notifier": (notifier_app, NotifierSettings),
}


@pytest.mark.parametrize("service", sorted(FACTORIES))
async def test_service_is_ready_and_serves_its_openapi(
    service: str, service_settings: ServiceSettings
) -> None:
    factory, settings_class = FACTORIES[service]
    app = factory(settings_class(**service_settings.model_dump()))
    async with app.router.lifespan_context(app):
        await app.state.resources.broker.wait_connected()
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            ready = await client.get("/health/ready")
            spec = await client.get("/openapi.json")
    assert ready.status_code == 200, ready.text
    assert spec.json()["info"]["title"].startswith("Cinema")


def test_settings_read_their_own_environment_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BILLING_DATABASE_URL", "postgresql+asyncpg://b@db/billing")
    monkeypatch.setenv("ACCESS_DATABASE_URL", "postgresql+asyncpg://a@db/access")
    assert BillingSettings().database_url == "postgresql+asyncpg://b@db/billing"
    assert AccessSettings().database_url == "postgresql+asyncpg://a@db/access"
    assert GatewaySettings().database_url.endswith("127.0.0.1:5432/cinema")
