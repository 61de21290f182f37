"""A database and a broker prefix of their own for the fuzzer (it writes whatever it likes),
and a way to serve the apps the fuzzed one calls over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import uvicorn

from shared import dbadmin
from shared.broker import Broker
from shared.settings import ServiceSettings
from tests import support


@pytest.fixture(scope="module")
def scratch_database_url() -> Iterator[str]:
    url = support.fresh_database_url()
    asyncio.run(dbadmin.ensure_database(url))
    for service in support.SERVICES:
        support.migrate(url, service)
    yield url
    asyncio.run(dbadmin.drop_database(url))


@pytest.fixture(scope="module")
async def scratch_prefix() -> AsyncIterator[str]:
    prefix = support.unique_prefix()
    yield prefix
    broker = Broker(support.AMQP_URL, prefix=prefix, client_name="tests-fuzz-cleanup")
    await broker.connect()
    await support.delete_run_queues(broker)
    await support.delete_events_exchange(broker)
    await broker.close()


@pytest.fixture(scope="module")
def scratch_settings(scratch_database_url: str, scratch_prefix: str) -> ServiceSettings:
    return ServiceSettings(
        database_url=scratch_database_url, amqp_url=support.AMQP_URL, broker_prefix=scratch_prefix
    )


@contextlib.contextmanager
def served_in_thread(app: Any, port: int) -> Iterator[str]:
    """Serve an ASGI app over HTTP from a thread of its own (for callers that are not async)."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name=f"served-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the app on port {port} did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(20)
