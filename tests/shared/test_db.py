"""The connection pool: a fixed number of kept connections, checked only after they idled."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from shared import db


async def _backend_pid(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(sa.text("SELECT pg_backend_pid()")) or 0)


async def _terminate(database_url: str, pid: int) -> None:
    admin = db.create_engine(database_url, schema="public", application_name="test-admin")
    try:
        async with admin.connect() as conn:
            await conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    finally:
        await admin.dispose()


class TestPingAfterIdle:
    async def test_a_connection_killed_while_idle_is_replaced_without_an_error(
        self, database_url: str
    ) -> None:
        engine = db.create_engine(
            database_url, schema="public", application_name="test-pool", pool_size=1
        )
        try:
            first = await _backend_pid(engine)
            await _terminate(database_url, first)
            await asyncio.sleep(db.PING_AFTER_IDLE_SECONDS + 0.2)
            second = await _backend_pid(engine)
        finally:
            await engine.dispose()
        assert second != first

    async def test_a_recently_used_connection_is_not_pinged_and_a_dead_one_is_replaced_after(
        self, database_url: str
    ) -> None:
        engine = db.create_engine(
            database_url, schema="public", application_name="test-pool", pool_size=2
        )
        try:
            pids = {await _backend_pid(engine) for _ in range(20)}
            await _terminate(database_url, pids.pop())
            # used a moment ago: handed out unchecked, so the statement meets the dead connection
            with pytest.raises(DBAPIError) as failed:
                await _backend_pid(engine)
            again = await _backend_pid(engine)
        finally:
            await engine.dispose()
        assert not pids  # twenty checkouts, one connection: the most recently used is kept
        assert failed.value.connection_invalidated
        assert again > 0


class TestFixedSize:
    async def test_a_burst_waits_for_the_pool_instead_of_opening_more_connections(
        self, database_url: str
    ) -> None:
        engine = db.create_engine(
            database_url, schema="public", application_name="test-pool", pool_size=3
        )

        async def busy() -> int:
            async with engine.connect() as conn:
                pid = int(await conn.scalar(sa.text("SELECT pg_backend_pid()")) or 0)
                await conn.execute(sa.text("SELECT pg_sleep(0.05)"))
                return pid

        try:
            pids = set(await asyncio.gather(*(busy() for _ in range(12))))
        finally:
            await engine.dispose()
        assert len(pids) == 3
