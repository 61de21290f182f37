"""The long-lived things a process opens at start and closes at stop.

An HTTP service opens them in its lifespan, a worker in :func:`shared.runtime.run_worker`; both
through :func:`open_resources`, so the database and broker are set up the same way everywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import orjson
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared import db, tracing
from shared.broker import Broker
from shared.settings import ServiceSettings

logger = logging.getLogger(__name__)


@dataclass
class Resources:
    service: str
    schema: str
    engine: AsyncEngine
    session_factory: async_sessionmaker[AsyncSession]
    broker: Broker
    relay_engine: AsyncEngine
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    # Anything else opened at start (HTTP clients…) registers its closing here.
    exit_stack: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)


def _json_dumps(value: object) -> str:
    return orjson.dumps(value).decode()


def make_database(
    settings: ServiceSettings, *, service: str, schema: str, pool_size: int | None = None
) -> tuple[AsyncEngine, async_sessionmaker[AsyncSession]]:
    """The engine (``pool_size`` connections, ``DB_POOL_SIZE`` when not given) and sessions."""
    engine = db.create_engine(
        settings.database_url,
        schema=schema,
        application_name=service,
        pool_size=pool_size or settings.db_pool_size,
        json_serializer=_json_dumps,
        json_deserializer=orjson.loads,
    )
    tracing.instrument_engine(engine)
    factory = db.create_session_factory(engine)
    factory.configure(info={"service": service, "schema": schema})
    return engine, factory


async def connect_broker_forever(broker: Broker, *, delay: float = 1.0) -> None:
    """Connect, retrying with backoff; the process stays up (and not ready) meanwhile."""
    while True:
        try:
            await broker.connect()
            return
        except Exception as exc:
            logger.warning("broker unreachable, retrying in %.0fs: %s", delay, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)


async def stop_tasks(tasks: list[asyncio.Task[None]], *, grace: float = 10.0) -> None:
    """Cancel background tasks and wait for them, without ever waiting forever.

    A task can miss its cancellation (one that arrives just as an ``await`` inside it
    completes is lost on Python 3.11), so one still running is cancelled again every half
    second; after ``grace`` seconds the ones still running are logged and left behind, so a
    process always shuts down. What a task ended with is logged there too, not raised.
    """
    for task in tasks:
        task.cancel()
    pending = {task for task in tasks if not task.done()}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    while pending and loop.time() < deadline:
        _, pending = await asyncio.wait(pending, timeout=min(0.5, deadline - loop.time()))
        for task in pending:
            task.cancel()
    for task in pending:
        logger.error("background task %s did not stop within %.0f s", task.get_name(), grace)
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            logger.error("background task %s failed", task.get_name(), exc_info=task.exception())


@contextlib.asynccontextmanager
async def open_resources(
    settings: ServiceSettings, *, service: str, schema: str, wait_for_broker: bool = True
) -> AsyncIterator[Resources]:
    """Open the engine and the broker; close both (and any tasks started) on the way out."""
    engine, factory = make_database(settings, service=service, schema=schema)
    # The outbox relay's own two connections (its LISTEN and its batches): requests or
    # handlers filling the main pool in a burst must not hold published events back.
    relay_engine, _ = make_database(
        settings, service=f"{service}-relay", schema=schema, pool_size=2
    )
    broker = Broker(settings.amqp_url, prefix=settings.broker_prefix, client_name=service)
    resources = Resources(service, schema, engine, factory, broker, relay_engine)
    try:
        if wait_for_broker:
            await connect_broker_forever(broker)
        yield resources
    finally:
        await stop_tasks(resources.tasks)
        await resources.exit_stack.aclose()
        await broker.close()
        await relay_engine.dispose()
        await engine.dispose()
