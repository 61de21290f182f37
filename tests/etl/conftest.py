"""The ETL between a real movie admin database and the real billing app served over HTTP.

Each test gets its own scratch source database (``etl/movies_admin.sql`` applied: schema and the
ten demo movies), an empty billing catalog and an empty ETL state.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from billing_api.app import create_app as create_billing
from billing_api.config import BillingSettings
from etl import demo_source
from etl.config import EtlSettings
from shared import dbadmin
from shared.settings import ServiceSettings
from tests import support

DEMO_MOVIES = 10


@dataclass
class Billing:
    """billing_api on a fixed local port, started and stopped by the test."""

    settings: BillingSettings
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @contextlib.asynccontextmanager
    async def up(self) -> AsyncIterator[str]:
        app = create_billing(self.settings)
        async with support.served(app, self.port) as url:
            yield url


@dataclass
class World:
    source_url: str
    source: AsyncEngine
    database: AsyncEngine  # the suite's database: billing's and etl's schemas
    billing: Billing
    database_url: str

    def settings(self, **overrides: Any) -> EtlSettings:
        values: dict[str, Any] = {
            "database_url": self.database_url,
            "source_url": self.source_url,
            "billing_url": self.billing.url,
            "batch_size": 1000,
            "settle_seconds": 0,
            "backoff_initial_seconds": 0.05,
            "backoff_max_seconds": 0.2,
            "log_json": True,
        }
        return EtlSettings(**(values | overrides))

    async def source_execute(self, sql: str, **params: Any) -> None:
        async with self.source.begin() as conn:
            await conn.execute(sa.text(sql), params)

    async def source_scalar(self, sql: str, **params: Any) -> Any:
        async with self.source.connect() as conn:
            return await conn.scalar(sa.text(sql), params)

    async def scalar(self, sql: str, **params: Any) -> Any:
        async with self.database.connect() as conn:
            return await conn.scalar(sa.text(sql), params)

    async def add_films(self, count: int, *, title: str = "Film") -> None:
        """``count`` source movies, each modified a millisecond after the previous one."""
        await self.source_execute(
            "INSERT INTO content.film_work (id, title, description, type, created, modified)"
            " SELECT gen_random_uuid(), :title || ' ' || n, 'About film ' || n, 'movie',"
            " now() - interval '1 day', now() - interval '1 day' + n * interval '1 millisecond'"
            " FROM generate_series(1, :count) AS n",
            title=title,
            count=count,
        )

    async def billing_titles(self) -> dict[str, tuple[str, bool]]:
        """Billing's movies: title and whether the movie is on sale."""
        async with self.database.connect() as conn:
            rows = await conn.execute(
                sa.text("SELECT id, title, available AND in_source AS on_sale FROM billing.movie")
            )
            return {str(row.id): (row.title, row.on_sale) for row in rows}

    async def source_titles(self) -> dict[str, str]:
        async with self.source.connect() as conn:
            rows = await conn.execute(sa.text("SELECT id, title FROM content.film_work"))
            return {str(row.id): row.title for row in rows}


@pytest.fixture
def source_url() -> Iterator[str]:
    url = support.fresh_database_url().replace("cinema_test_", "movies_admin_test_")
    try:
        asyncio.run(demo_source.load(url))
    except dbadmin.DependencyMissing as exc:
        pytest.fail(f"the ETL tests need PostgreSQL: {exc}")
    yield url
    asyncio.run(dbadmin.drop_database(url))


@pytest.fixture
async def world(
    source_url: str, database_url: str, service_settings: ServiceSettings
) -> AsyncIterator[World]:
    database = create_async_engine(database_url)
    source = create_async_engine(source_url)
    async with database.begin() as conn:
        await conn.execute(sa.text("TRUNCATE billing.movie CASCADE"))
        await conn.execute(sa.text("TRUNCATE etl.sync_state"))
    billing = Billing(BillingSettings(**service_settings.model_dump()), support.free_port())
    yield World(source_url, source, database, billing, database_url)
    await source.dispose()
    await database.dispose()
