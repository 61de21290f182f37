"""Faults injected into the real running system; afterwards nothing is lost or doubled.

One set of processes (two replicas of every API and worker) serves every fault; each fault gets
its own users, so each run's invariants are checked on its own customers.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import time
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from shared.broker import Broker
from tests import support
from tests.faults import invariants, workload
from tests.faults.faults import FAULTS
from tests.faults.harness import System, running_system
from tests.faults.report import RESULTS

# 500 users act in every fault's run (the workload); FAULT_USERS scales it up or down.
USERS_PER_FAULT = int(os.environ.get("FAULT_USERS", "500"))
SETTLE_WITHIN = 120.0


@pytest.fixture(scope="module")
async def system(database_url: str, broker_prefix: str, broker: Broker) -> AsyncIterator[System]:
    logs = support.ARTIFACTS / "fault-logs"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    async with running_system(database_url, broker_prefix, logs) as running:
        await running.cinema("billing", "seed-demo")
        yield running


@pytest.fixture(scope="module")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(
        database_url, connect_args={"server_settings": {"application_name": "fault-suite"}}
    )
    yield engine
    await engine.dispose()


@pytest.mark.timeout(420)
@pytest.mark.parametrize("fault", list(FAULTS))
async def test_nothing_is_lost_or_doubled_under(
    fault: str, system: System, engine: AsyncEngine, broker: Broker
) -> None:
    rng = random.Random(fault)
    stats = workload.Stats()
    client = workload.Client(system, stats)
    customers = [workload.new_customer(rng) for _ in range(USERS_PER_FAULT)]
    relay_before = system.relay.delivered
    stored_before = await invariants.webhooks_stored(engine)
    started = time.monotonic()
    injected = asyncio.create_task(FAULTS[fault](system, engine))
    try:
        gave_up = await workload.run_users(client, customers)
        observed = await injected
    finally:
        if not injected.done():
            injected.cancel()
            await asyncio.gather(injected, return_exceptions=True)
    bought = time.monotonic()
    await workload.renew(
        system, stats, customers, kill_midway=engine if fault.startswith("SIGKILL") else None
    )
    renewed = time.monotonic()
    await invariants.settled(system, engine, broker, SETTLE_WITHIN)
    observed |= stats.notes
    observed["503 answers seen by clients"] = stats.statuses[503]
    observed["seconds (users, renewals, settling)"] = (
        round(bought - started),
        round(renewed - bought),
        round(time.monotonic() - renewed),
    )
    found = await invariants.check(system, engine, broker, client, customers)
    await client.http.aclose()
    deliveries = system.relay.delivered - relay_before
    absorbed = deliveries - (await invariants.webhooks_stored(engine) - stored_before)
    RESULTS.append(
        {
            "fault": fault,
            "attempted": sum(stats.attempted.values()),
            "succeeded": sum(stats.succeeded.values()),
            "duplicates suppressed": absorbed + stats.replays,
            "lost": len(found.lost) + len(gave_up),
            "doubled": len(found.doubled),
            "observed": observed,
            "checked": dict(found.checked),
            "statuses": dict(stats.statuses),
            "webhook deliveries": deliveries,
        }
    )
    assert not gave_up, gave_up[:5]
    assert not found.lost, found.lost[:10]
    assert not found.doubled, found.doubled[:10]
    assert not stats.server_errors, stats.server_errors[:5]
