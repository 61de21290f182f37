"""Start-up checks for a developer machine: is PostgreSQL there, is RabbitMQ there, is the database
created. Each failure is one line that says what to do."""

from __future__ import annotations

import asyncio
import socket
from urllib.parse import urlsplit

import asyncpg
from sqlalchemy.engine import make_url


class DependencyMissing(RuntimeError):
    pass


def _asyncpg_dsn(url: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


async def ensure_database(url: str) -> bool:
    """Create the database named in ``url`` if it does not exist; True when it was created."""
    name = make_url(url).database
    if not name:
        raise DependencyMissing("the database URL names no database")
    try:
        conn = await asyncpg.connect(_asyncpg_dsn(url, "postgres"), timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        host = make_url(url).host
        raise DependencyMissing(
            f"PostgreSQL is not reachable at {host}:{make_url(url).port or 5432} ({exc}); start it"
            " (e.g. `docker compose up -d postgres`) or set the *_DATABASE_URL variables"
        ) from exc
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists:
            return False
        await conn.execute(f'CREATE DATABASE "{name}"')
        return True
    finally:
        await conn.close()


async def drop_database(url: str) -> None:
    name = make_url(url).database
    conn = await asyncpg.connect(_asyncpg_dsn(url, "postgres"), timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def check_broker(amqp_url: str) -> None:
    """A TCP check is enough to tell a developer RabbitMQ is not running."""
    parts = urlsplit(amqp_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 5672
    try:
        with socket.create_connection((host, port), timeout=3):
            pass
    except OSError as exc:
        raise DependencyMissing(
            f"RabbitMQ is not reachable at {host}:{port} ({exc}); start it"
            " (e.g. `docker compose up -d rabbitmq`) or set the *_AMQP_URL variables"
        ) from exc


def prepare(database_url: str, amqp_url: str) -> bool:
    created = asyncio.run(ensure_database(database_url))
    check_broker(amqp_url)
    return created
