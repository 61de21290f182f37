"""access_api on the real database and broker: its app, its projection consumer, and helpers to
publish the snapshots billing would send."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from access_api.app import create_app
from access_api.config import AccessSettings
from access_api.projection import make_consumer
from shared import events
from shared.auth import AuthSettings, mint_service_token, mint_user_token
from shared.broker import Broker
from shared.consumer import Consumer
from shared.settings import ServiceSettings
from tests import support

ACCESS_TABLES = ("user_grants", "plan_coverage", "role_sync", "inbox", "outbox")


def service_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_service_token(AuthSettings(), 'cinema-player')}"}


def user_headers(user_id: UUID) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_user_token(AuthSettings(), user_id)}"}


def subscription(plan_id: UUID, until: datetime | None, role: str | None = None) -> events.Grant:
    return events.Grant(
        source="subscription", source_id=uuid4(), plan_id=plan_id, role=role, valid_until=until
    )


def purchase(movie_id: UUID, until: datetime | None = None) -> events.Grant:
    return events.Grant(source="purchase", source_id=uuid4(), movie_id=movie_id, valid_until=until)


@dataclass
class Access:
    app: FastAPI
    http: httpx.AsyncClient
    broker: Broker
    consumer: Consumer

    async def publish(self, payload: events.EventPayload) -> None:
        envelope = events.wrap(payload, producer="billing_api")
        await self.broker.publish(
            events.encode(envelope), routing_key=envelope.type, message_id=str(envelope.id)
        )

    async def grants(
        self, user_id: UUID, version: int, *grants: events.Grant, wait: bool = True
    ) -> None:
        await self.publish(
            events.EntitlementsChanged(user_id=user_id, version=version, grants=tuple(grants))
        )
        if wait:
            await self.wait_for("user_grants", "user_id", user_id, version)

    async def plan(
        self,
        plan_id: UUID,
        version: int = 1,
        *,
        code: str = "basic",
        all_movies: bool = False,
        movie_ids: tuple[UUID, ...] = (),
        active: bool = True,
        role: str | None = None,
    ) -> None:
        await self.publish(
            events.PlanChanged(
                plan_id=plan_id,
                code=code,
                version=version,
                all_movies=all_movies,
                movie_ids=movie_ids,
                role=role,
                active=active,
            )
        )
        await self.wait_for("plan_coverage", "plan_id", plan_id, version)

    async def wait_for(self, table: str, key: str, value: UUID, version: int) -> None:
        engine = self.app.state.resources.engine

        async def applied() -> bool:
            async with engine.connect() as conn:
                stored = await conn.scalar(
                    sa.text(f"SELECT version FROM {table} WHERE {key} = :v"), {"v": value}
                )
            return stored is not None and stored >= version

        await support.eventually(applied)

    async def check(self, user_id: UUID, movie_id: UUID, **kwargs: Any) -> dict[str, Any]:
        response = await self.http.get(
            f"/api/v1/access/{user_id}/movies/{movie_id}",
            headers=kwargs.pop("headers", service_headers()),
        )
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result


async def truncate(app: FastAPI) -> None:
    await support.truncate(app.state.resources.engine, ", ".join(ACCESS_TABLES))


@pytest.fixture
async def access(service_settings: ServiceSettings, broker: Broker) -> AsyncIterator[Access]:
    app = create_app(AccessSettings(**service_settings.model_dump()))
    async with app.router.lifespan_context(app):
        resources = app.state.resources
        await resources.broker.wait_connected()
        await truncate(app)
        consumer = make_consumer(broker, resources.session_factory)
        await consumer.start()
        cache = app.state.access_cache
        await support.eventually(lambda: _true(cache.listening))
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app), base_url="http://access.test"
        ) as http:
            yield Access(app, http, broker, consumer)
        await consumer.stop()
        await support.delete_consumer_queues(broker, consumer.queues)


async def _true(value: bool) -> bool:
    return value
