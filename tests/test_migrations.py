"""Each service's Alembic environment owns exactly one schema and round-trips cleanly."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import create_async_engine

from shared import clock, dbadmin
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


# The revision that moved each outbox to stored bytes, and the one before it.
OUTBOX_PAYLOAD = {
    "billing_api": ("0012", "0013"),
    "payment_gateway": ("0004", "0005"),
    "access_api": ("0002", "0003"),
    "notifier": ("0003", "0004"),
    "etl": ("0002", "0003"),
}


async def run_sql(url: str, *statements: tuple[str, dict[str, Any]]) -> list[list[tuple[Any, ...]]]:
    """Run each statement in its own transaction; the rows of each."""
    engine = create_async_engine(url)
    results: list[list[tuple[Any, ...]]] = []
    try:
        for statement, params in statements:
            async with engine.begin() as conn:
                result = await conn.execute(sa.text(statement), params)
                results.append([tuple(row) for row in result] if result.returns_rows else [])
    finally:
        await engine.dispose()
    return results


@pytest.mark.parametrize("service", sorted(OUTBOX_PAYLOAD))
def test_outbox_moves_to_stored_bytes_without_losing_an_unpublished_event(
    service: str, scratch_database: str
) -> None:
    schema = SCHEMAS[service]
    before, after = OUTBOX_PAYLOAD[service]
    cfg = config(scratch_database, service)
    # Written as the previous release writes: a JSON body.
    old_writer = (
        f"INSERT INTO {schema}.outbox (id, event_type, body, published_at)"
        " VALUES (:id, 'wallet.topped_up', CAST(:body AS jsonb), :published_at)"
    )
    new_writer = (
        f"INSERT INTO {schema}.outbox (id, event_type, payload)"
        " VALUES (:id, 'wallet.topped_up', :payload)"
    )
    numbers = (
        f"SELECT body ->> 'n', convert_from(payload, 'UTF8')::jsonb ->> 'n'"
        f" FROM {schema}.outbox ORDER BY id"
    )
    ids = [uuid4() for _ in range(4)]
    ids.sort()

    command.upgrade(cfg, before)
    asyncio.run(
        run_sql(
            scratch_database,
            (old_writer, {"id": ids[0], "body": '{"n": 1}', "published_at": None}),
            (old_writer, {"id": ids[1], "body": '{"n": 2}', "published_at": clock.now()}),
        )
    )
    command.upgrade(cfg, after)
    # While the deploy rolls, both releases write; the trigger fills the form each one left out.
    asyncio.run(
        run_sql(
            scratch_database,
            (new_writer, {"id": ids[2], "payload": b'{"n": 3}'}),
            (old_writer, {"id": ids[3], "body": '{"n": 4}', "published_at": None}),
        )
    )
    [rows] = asyncio.run(run_sql(scratch_database, (numbers, {})))
    # The waiting event got its bytes; the published one is history and is left as it was.
    assert rows == [("1", "1"), ("2", None), ("3", "3"), ("4", "4")]

    command.downgrade(cfg, before)
    [bodies] = asyncio.run(
        run_sql(scratch_database, (f"SELECT body ->> 'n' FROM {schema}.outbox ORDER BY id", {}))
    )
    assert bodies == [("1",), ("2",), ("3",), ("4",)]
