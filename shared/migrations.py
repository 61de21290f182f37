"""The body of every service's Alembic ``env.py``: one schema per service, asyncpg, online/offline.

Each service keeps its own Alembic environment (``alembic -n billing_api upgrade head``), its
version table lives in its own schema, and autogenerate looks only at that schema.
"""

from __future__ import annotations

import asyncio
from typing import Any

import sqlalchemy as sa
from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from shared.tables import metadata as messaging_metadata

SHARED_TABLES = set(messaging_metadata.tables)


def database_url(default_url: str) -> str:
    """``-x database_url=...`` wins, then a URL set by a caller on the config, then settings."""
    x_args = context.get_x_argument(as_dictionary=True)
    url = x_args.get("database_url") or context.config.attributes.get("database_url")
    return str(url or default_url)


def run_env(target_metadata: sa.MetaData, *, schema: str, default_url: str) -> None:
    url = database_url(default_url)
    options: dict[str, Any] = {
        "target_metadata": target_metadata,
        "version_table_schema": schema,
        "include_schemas": True,
        "include_name": lambda name, type_, parent: type_ != "schema" or name == schema,
        "include_object": lambda obj, name, type_, reflected, compare_to: (
            not (type_ == "table" and name in SHARED_TABLES)
        ),
    }
    if context.is_offline_mode():
        context.configure(url=url, literal_binds=True, **options)
        with context.begin_transaction():
            context.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            context.run_migrations()
        return

    def run(connection: Connection) -> None:
        connection.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        connection.commit()
        # One transaction for the whole run, begun by Alembic itself (none is open here): a
        # downgrade refused half-way rolls back whole, and a migration may still build an index
        # CONCURRENTLY in an autocommit block (which commits the steps before it first).
        context.configure(connection=connection, **options)
        with context.begin_transaction():
            context.run_migrations()

    async def main() -> None:
        engine = create_async_engine(url, poolclass=NullPool)
        async with engine.connect() as connection:
            await connection.run_sync(run)
        await engine.dispose()

    asyncio.run(main())
