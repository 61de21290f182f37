"""The connection pool: a fixed number of kept connections, checked only after they idled."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from shared import db


@contextlib.asynccontextmanager
async def _pool(
    database_url: str, size: int, name: str = "test-pool"
) -> AsyncIterator[AsyncEngine]:
    engine = db.create_engine(database_url, schema="public", application_name=name, pool_size=size)
    try:
        yield engine
    finally:
        await engine.dispose()


async def _backend_pid(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(sa.text("SELECT pg_backend_pid()")) or 0)


async def _terminate(database_url: str, pid: int) -> None:
    async with _pool(database_url, 1, "test-admin") as admin, admin.connect() as conn:
        await conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})


class TestPingAfterIdle:
    async def test_a_connection_killed_while_idle_is_replaced_without_an_error(
        self, database_url: str
    ) -> None:
        async with _pool(database_url, 1) as engine:
            first = await _backend_pid(engine)
            await _terminate(database_url, first)
            await asyncio.sleep(db.PING_AFTER_IDLE_SECONDS + 0.2)
            second = await _backend_pid(engine)
        assert second != first

    async def test_a_recently_used_connection_is_not_pinged_and_a_dead_one_is_replaced_after(
        self, database_url: str
    ) -> None:
        async with _pool(database_url, 2) as engine:
            pids = {await _backend_pid(engine) for _ in range(20)}
            await _terminate(database_url, pids.pop())
            # used a moment ago: handed out unchecked, so the statement meets the dead connection
            with pytest.raises(DBAPIError) as failed:
                await _backend_pid(engine)
            again = await _backend_pid(engine)
        assert not pids  # twenty checkouts, one connection: the most recently used is kept
        assert failed.value.connection_invalidated
        assert again > 0


class TestFixedSize:
    async def test_a_burst_waits_for_the_pool_instead_of_opening_more_connections(
        self, database_url: str
    ) -> None:
        async def busy(engine: AsyncEngine) -> int:
            async with engine.connect() as conn:
                pid = int(await conn.scalar(sa.text("SELECT pg_backend_pid()")) or 0)
                await conn.execute(sa.text("SELECT pg_sleep(0.05)"))
                return pid

        async with _pool(database_url, 3) as engine:
            pids = set(await asyncio.gather(*(busy(engine) for _ in range(12))))
        assert len(pids) == 3
