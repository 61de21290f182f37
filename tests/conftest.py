"""Fixtures on the real PostgreSQL and RabbitMQ.

One fresh database per test run with every service's migrations applied, and one unique name
prefix on the broker per run; both are removed at the end.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared import clock, dbadmin, production
from shared.broker import Broker
from shared.resources import make_database
from shared.settings import ServiceSettings
from tests import support

# The tests run in development mode (the repository's secrets, the sandbox provider), whatever the
# shell says; set before any settings are read, and inherited by every process the tests start.
os.environ[production.ENVIRONMENT_VARIABLE] = production.DEVELOPMENT


@pytest.fixture(autouse=True)
def wall_clock() -> Iterator[None]:
    """Every test ends on the wall clock. The clock is process-wide: two tasks of one test that
    each freeze it (two job runs gathered at once) can leave the frozen one installed when they
    exit in the wrong order, and every test after it would run frozen (checkouts opened in the
    past, retries never due)."""
    yield
    clock.reset()


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    url = support.fresh_database_url()
    try:
        asyncio.run(dbadmin.ensure_database(url))
    except dbadmin.DependencyMissing as exc:
        pytest.fail(f"the tests need PostgreSQL: {exc}")
    for service in support.SERVICES:
        support.migrate(url, service)
    yield url
    asyncio.run(dbadmin.drop_database(url))


@pytest.fixture(scope="session")
def broker_prefix() -> Iterator[str]:
    """This run's prefix; at the very end everything declared under it is deleted (whether or
    not the ``broker`` fixture was used: apps started by the tests declare names too)."""
    prefix = support.unique_prefix()
    yield prefix
    asyncio.run(support.delete_broker_names(prefix))


@pytest.fixture(scope="session")
def service_settings(database_url: str, broker_prefix: str) -> ServiceSettings:
    return ServiceSettings(
        database_url=database_url, amqp_url=support.AMQP_URL, broker_prefix=broker_prefix
    )


@pytest.fixture(scope="session")
async def billing_db(
    service_settings: ServiceSettings,
) -> AsyncIterator[tuple[AsyncEngine, async_sessionmaker[AsyncSession]]]:
    """The billing schema's engine and session factory (any schema would do for shared tests)."""
    engine, factory = make_database(service_settings, service="billing_api", schema="billing")
    yield engine, factory
    await engine.dispose()


@pytest.fixture(scope="session")
async def broker(broker_prefix: str) -> AsyncIterator[Broker]:
    broker = Broker(support.AMQP_URL, prefix=broker_prefix, client_name="tests")
    try:
        await broker.connect()
    except Exception as exc:
        pytest.fail(f"the tests need RabbitMQ at {support.AMQP_URL}: {exc}")
    yield broker
    await broker.close()
