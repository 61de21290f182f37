"""Each service's Alembic environment owns exactly one schema and round-trips cleanly."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import create_async_engine

from shared import dbadmin
from tests import support

SCHEMAS = {
    "billing_api": "billing",
    "payment_gateway": "gateway",
    "access_api": "access",
    "notifier": "notifier",
    "etl": "etl",
}


@pytest.fixture
def scratch_database() -> Iterator[str]:
    url = support.fresh_database_url()
    asyncio.run(dbadmin.ensure_database(url))
    yield url
    asyncio.run(dbadmin.drop_database(url))


def config(url: str, service: str) -> Config:
    cfg = Config(str(support.ROOT / "alembic.ini"), ini_section=service)
    cfg.attributes["database_url"] = url
    return cfg


async def tables(url: str) -> set[tuple[str, str]]:
    engine = create_async_engine(url)
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.text(
                "SELECT table_schema, table_name FROM information_schema.tables"
                " WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
            )
        )
        found = {(row[0], row[1]) for row in rows}
    await engine.dispose()
    return found


@pytest.mark.parametrize("service", sorted(SCHEMAS))
def test_upgrade_creates_only_its_schema_and_downgrade_removes_it(
    service: str, scratch_database: str
) -> None:
    schema = SCHEMAS[service]
    command.upgrade(config(scratch_database, service), "head")
    created = asyncio.run(tables(scratch_database))
    assert {name for owner, name in created if owner == schema} >= {
        "outbox",
        "inbox",
        "alembic_version",
    }
    assert {owner for owner, _ in created} == {schema}

    command.check(config(scratch_database, service))  # models and migrations agree

    command.downgrade(config(scratch_database, service), "base")
    assert asyncio.run(tables(scratch_database)) == {(schema, "alembic_version")}
