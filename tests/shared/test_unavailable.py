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


locked = APIRouter()


@locked.post("/lock/{first}/{second}")
async def lock_two(first: int, second: int, session: SessionDep) -> dict[str, bool]:
    """Lock two rows in the given order, pausing between them."""
    lock = sa.text("SELECT n FROM deadlock_rows WHERE n = :n FOR UPDATE")
    await session.execute(lock, {"n": first})
    await asyncio.sleep(0.3)
    await session.execute(lock, {"n": second})
    return {"locked": True}


class TestConcurrentTransactions:
    async def test_the_request_that_loses_a_deadlock_answers_503_to_retry_not_500(
        self, database_url: str, broker_prefix: str
    ) -> None:
        app = create_service_app(
            service="billing_api",
            schema="billing",
            title="t",
            description="d",
            settings=ServiceSettings(
                database_url=database_url, amqp_url=support.AMQP_URL, broker_prefix=broker_prefix
            ),
            routers=[locked],
        )
        async with app.router.lifespan_context(app):
            engine = app.state.resources.engine
            async with engine.begin() as conn:
                await conn.execute(sa.text("DROP TABLE IF EXISTS deadlock_rows"))
                await conn.execute(sa.text("CREATE TABLE deadlock_rows (n int PRIMARY KEY)"))
                await conn.execute(sa.text("INSERT INTO deadlock_rows VALUES (1), (2)"))
            transport = httpx.ASGITransport(app, raise_app_exceptions=False)
            try:
                async with (
                    httpx.AsyncClient(transport=transport, base_url="http://t") as client,
                    asyncio.timeout(20),
                ):
                    answers = await asyncio.gather(
                        client.post("/lock/1/2"), client.post("/lock/2/1")
                    )
            finally:
                async with engine.begin() as conn:
                    await conn.execute(sa.text("DROP TABLE deadlock_rows"))
        assert sorted(answer.status_code for answer in answers) == [200, 503]
        [lost] = [answer for answer in answers if answer.status_code == 503]
        assert lost.json() == {
            "error": "TransactionConflict",
            "detail": "the request collided with a concurrent change and was undone; "
            "retry the same request",
        }
        assert lost.headers["Retry-After"] == "1"
