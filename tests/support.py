"""Helpers for tests that need the real database and broker."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import uvicorn
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url

from shared.broker import Broker, ConsumerQueues

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("billing_api", "payment_gateway", "access_api", "notifier", "etl")

BASE_DATABASE_URL = os.environ.get(
    "TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
AMQP_URL = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def redis_url() -> str:
    """The tests' Redis, checked reachable: a test that needs it fails loudly without it."""
    import socket

    import pytest

    url = make_url(REDIS_URL)
    try:
        socket.create_connection((url.host or "127.0.0.1", url.port or 6379), timeout=2).close()
    except OSError as exc:
        pytest.fail(f"the rate limit tests need Redis at {REDIS_URL}: {exc}")
    return REDIS_URL


def fresh_database_url() -> str:
    name = f"cinema_test_{uuid.uuid4().hex[:10]}"
    return make_url(BASE_DATABASE_URL).set(database=name).render_as_string(hide_password=False)


def migrate(database_url: str, service: str, revision: str = "head") -> None:
    config = Config(str(ROOT / "alembic.ini"), ini_section=service)
    config.attributes["database_url"] = database_url
    command.upgrade(config, revision)


def unique_prefix() -> str:
    return f"test-{uuid.uuid4().hex[:8]}."


async def delete_consumer_queues(broker: Broker, queues: ConsumerQueues) -> None:
    channel = await broker.channel()
    for name in (queues.main, queues.dead, *queues.retries):
        await channel.queue_delete(name)
    await channel.close()


# The consumers the services' processes declare; the run's prefix makes their queues its own.
SERVICE_CONSUMERS = ("billing", "access", "notifier")


async def delete_run_queues(broker: Broker) -> None:
    """Remove what the services' processes declared under this run's prefix, so test runs
    leave no quorum queues behind on a shared RabbitMQ (deleting a missing queue is a no-op)."""
    channel = await broker.channel()
    for consumer in SERVICE_CONSUMERS:
        queues = ConsumerQueues(broker.prefix, consumer, [0.0] * 10)
        for name in (queues.main, queues.dead, *queues.retries):
            await channel.queue_delete(name)
    await channel.close()


async def delete_events_exchange(broker: Broker) -> None:
    channel = await broker.channel()
    await channel.exchange_delete(broker.name("cinema.events"))
    await channel.exchange_delete(broker.name("cinema.unrouted"))
    await channel.queue_delete(broker.name("cinema.unrouted"))
    await channel.close()


async def delete_broker_names(prefix: str) -> None:
    """Delete every queue and exchange the suite declares under ``prefix``."""
    broker = Broker(AMQP_URL, prefix=prefix, client_name="tests-cleanup")
    await broker.connect()
    try:
        await delete_run_queues(broker)
        await delete_events_exchange(broker)
    finally:
        await broker.close()


async def truncate(engine: Any, tables: str, *, attempts: int = 10) -> None:
    """``TRUNCATE tables`` while the app's own background tasks (relay, sweeps, senders) may hold
    row locks on them: wait a bounded time for the lock and retry on a deadlock, so a test's
    clean slate never fails (or hangs) because a background task was mid-transaction."""
    from sqlalchemy.exc import DBAPIError

    for attempt in range(attempts):
        try:
            async with engine.begin() as conn:
                await conn.exec_driver_sql("SET LOCAL lock_timeout = '2s'")
                await conn.exec_driver_sql(f"TRUNCATE {tables}")
            return
        except DBAPIError as exc:
            retryable = "deadlock detected" in str(exc) or "lock timeout" in str(exc)
            if not retryable or attempt == attempts - 1:
                raise
            await asyncio.sleep(0.1 * (attempt + 1))


async def eventually(
    check: Callable[[], Awaitable[bool]], *, timeout: float = 10.0, interval: float = 0.05
) -> None:
    """Wait until ``check`` holds; fail loudly with a timeout otherwise."""
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(interval)


ENV_PREFIXES = ("BILLING", "GATEWAY", "ACCESS", "NOTIFIER", "ETL", "CINEMA")


def suite_environment(database_url: str, broker_prefix: str) -> dict[str, str]:
    """Environment variables that point every service at the test database and broker prefix."""
    env = dict(os.environ)
    env["CINEMA_ENV"] = "development"  # the suite's own secrets and the sandbox provider
    for prefix in ENV_PREFIXES:
        env[f"{prefix}_DATABASE_URL"] = database_url
        env[f"{prefix}_AMQP_URL"] = AMQP_URL
        env[f"{prefix}_BROKER_PREFIX"] = broker_prefix
    return env


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def procfile() -> dict[str, list[str]]:
    """The suite's own processes ``make run`` starts, as ``name -> argv`` (the local mail sink
    for development is left out)."""
    processes = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, command_line = line.split(":", 1)
            if command_line.split()[0] == "cinema":
                processes[name.strip()] = command_line.split()
    return processes


@contextlib.asynccontextmanager
async def served(app: Any, port: int, *, running: bool = False) -> AsyncIterator[str]:
    """Serve an ASGI app over real HTTP on 127.0.0.1 (for browsers and other processes).

    ``running``: the app's lifespan already runs (a suite fixture's), so it is not started a
    second time: a second lifespan would build a second set of resources beside the first (a
    second sandbox webhook sender, delivering where the fixture's does not, racing it)."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off" if running else "on",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(20):
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


ARTIFACTS = ROOT / "test-artifacts"


@contextlib.asynccontextmanager
async def browser_page() -> AsyncIterator[Any]:
    """A page in headless Debian Chromium driven by Playwright; fails loudly if it is missing."""
    from playwright.async_api import async_playwright

    executable = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    if not Path(executable).exists():
        raise RuntimeError(
            f"Chromium is needed for browser tests and was not found at {executable}"
        )
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=executable,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            yield await browser.new_page()
        finally:
            await browser.close()


async def outbox_messages(engine: Any, event_type: str) -> list[dict[str, Any]]:
    """Every ``event_type`` event in this schema's outbox, oldest first, as its consumers read it
    (the stored bytes are what the relay publishes)."""
    import orjson
    import sqlalchemy as sa

    async with engine.connect() as conn:
        payloads = await conn.scalars(
            sa.text("SELECT payload FROM outbox WHERE event_type = :type ORDER BY seq"),
            {"type": event_type},
        )
        return [orjson.loads(payload) for payload in payloads]


async def outbox_published(engine: Any, *, timeout: float = 10.0) -> None:
    """Wait until the relays have published (with confirms) everything in this schema's outbox.

    Tests then read the probe queues: a confirmed message has already been routed to them.
    """
    import sqlalchemy as sa

    async def done() -> bool:
        async with engine.connect() as conn:
            left = await conn.scalar(
                sa.text("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            )
        return bool(left == 0)

    await eventually(done, timeout=timeout)
