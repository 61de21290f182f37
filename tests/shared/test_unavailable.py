"""A dependency that is down answers 503 with a clear body, never a 500 or a hang."""

from __future__ import annotations

import asyncio

import httpx
import sqlalchemy as sa
from fastapi import APIRouter

from shared.app import create_service_app
from shared.db import SessionDep
from shared.errors import unavailable_dependency
from shared.settings import ServiceSettings
from tests import support

router = APIRouter()


@router.get("/count")
async def count(session: SessionDep) -> dict[str, int]:
    return {"one": int(await session.scalar(sa.text("SELECT 1")) or 0)}


class TestDatabaseDown:
    async def test_a_request_needing_the_database_answers_503_and_ready_says_so(
        self, broker_prefix: str
    ) -> None:
        down = f"postgresql+asyncpg://postgres@127.0.0.1:{support.free_port()}/nowhere"
        app = create_service_app(
            service="billing_api",
            schema="billing",
            title="t",
            description="d",
            settings=ServiceSettings(
                database_url=down, amqp_url=support.AMQP_URL, broker_prefix=broker_prefix
            ),
            routers=[router],
        )
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app, raise_app_exceptions=False)
            async with (
                httpx.AsyncClient(transport=transport, base_url="http://t") as client,
                asyncio.timeout(20),
            ):
                response = await client.get("/count")
                ready = await client.get("/health/ready")
        assert response.status_code == 503
        assert response.json() == {
            "error": "ServiceUnavailable",
            "detail": "the database is unavailable; retry the same request",
        }
        assert response.headers["Retry-After"] == "1"
        assert ready.status_code == 503
        assert ready.json()["checks"]["database"] is False


class TestWhatCountsAsDown:
    def test_a_refused_connection_is_the_database_down(self) -> None:
        assert unavailable_dependency(ConnectionRefusedError(111, "refused")) == "database"

    def test_a_terminated_backend_is_the_database_down(self) -> None:
        class AdminShutdown(Exception):
            sqlstate = "57P01"

        assert unavailable_dependency(AdminShutdown()) == "database"

    def test_a_bug_is_not_a_dependency_down(self) -> None:
        assert unavailable_dependency(RuntimeError("bug")) is None
        assert unavailable_dependency(KeyError("x")) is None
