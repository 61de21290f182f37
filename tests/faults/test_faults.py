"""Faults injected into the real running system; afterwards nothing is lost or doubled.

One set of processes (two replicas of every API and worker) serves every fault; each fault gets
its own users, so each run's invariants are checked on its own customers. A second set, whose
gateways take payments through YooKassa (its stand-in), runs once more with a fault.
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
from tests.faults.faults import FAULTS, Fault
from tests.faults.harness import System, running_system
from tests.faults.report import RESULTS

# 500 users act in every fault's run (the workload); FAULT_USERS scales it up or down.
USERS_PER_FAULT = int(os.environ.get("FAULT_USERS", "500"))
# Fewer with YooKassa: one more fault run, kept to a few minutes.
YOOKASSA_USERS = int(os.environ.get("FAULT_YOOKASSA_USERS", "60"))
SETTLE_WITHIN = 120.0


@pytest.fixture(scope="module")
async def system(
    request: pytest.FixtureRequest, database_url: str, broker_prefix: str, broker: Broker
) -> AsyncIterator[System]:
    """The processes with the sandbox as provider, or with ``yookassa`` (indirect parameter);
    pytest stops one set before it starts the other."""
    provider: str = getattr(request, "param", "sandbox")
    logs = support.ARTIFACTS / ("fault-logs" if provider == "sandbox" else f"fault-logs-{provider}")
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    async with running_system(database_url, broker_prefix, logs, provider) as running:
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
    customers = [workload.new_customer(rng) for _ in range(USERS_PER_FAULT)]
    await _run(fault, FAULTS[fault], system, engine, broker, customers, fault.startswith("SIGKILL"))


@pytest.mark.timeout(420)
@pytest.mark.parametrize("system", ["yookassa"], indirect=True)
async def test_with_yookassa_nothing_is_lost_or_doubled_when_processes_are_killed(
    system: System, engine: AsyncEngine, broker: Broker
) -> None:
    """Customers confirm on YooKassa's page, its notifications arrive three times shuffled,
    renewals charge the saved payment method, refunds are YooKassa's; meanwhile the gateway and
    the workers are SIGKILLed, and so is a renewal pass."""
    rng = random.Random("yookassa")
    customers = [
        workload.new_customer(rng, workload.YOOKASSA_STORIES) for _ in range(YOOKASSA_USERS)
    ]
    fault = "SIGKILL workers and gateway"
    await _run(f"YooKassa, {fault}", FAULTS[fault], system, engine, broker, customers, True)
    assert system.standin is not None
    charges = system.standin.requests_to("POST", "/v3/payments")
    assert any("payment_method_id" in call.body for call in charges), "no renewal at YooKassa"
    assert system.standin.requests_to("POST", "/v3/refunds"), "no refund at YooKassa"


async def _run(
    name: str,
    fault: Fault,
    system: System,
    engine: AsyncEngine,
    broker: Broker,
    customers: list[workload.Customer],
    kill_renewal: bool,
) -> None:
    """The customers' stories beside the fault, renewals, settling; then nothing lost or
    doubled (the row of the printed table is ``name``'s)."""
    stats = workload.Stats()
    client = workload.Client(system, stats)
    relay_before = system.relay.delivered
    stored_before = await invariants.webhooks_stored(engine)
    started = time.monotonic()
    injected = asyncio.create_task(fault(system, engine))
    try:
        gave_up = await workload.run_users(client, customers)
        observed = await injected
    finally:
        if not injected.done():
            injected.cancel()
            await asyncio.gather(injected, return_exceptions=True)
    bought = time.monotonic()
    await workload.renew(system, stats, customers, kill_midway=engine if kill_renewal else None)
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
            "fault": name,
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
