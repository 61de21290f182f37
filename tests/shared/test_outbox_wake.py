"""A relay is woken at once by commits of its own process, on its own loop, whatever the thread."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from uuid import UUID

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared import outbox, outbox_wake
from shared.broker import Broker
from shared.outbox import OutboxRelay
from shared.resources import make_database
from shared.settings import ServiceSettings
from tests import support
from tests.shared.messaging import Probe, reset_tables, topped_up

Db = tuple[AsyncEngine, async_sessionmaker[AsyncSession]]

# Far longer than any wait below: an event that arrives in time was not found by polling.
POLL = 60.0


@pytest.fixture
async def db(billing_db: Db) -> Db:
    await reset_tables(billing_db[0])
    return billing_db


@pytest.fixture
async def probe(broker: Broker) -> AsyncIterator[Probe]:
    probe = await Probe.bind(broker, "wallet.topped_up")
    yield probe
    await probe.close()


@pytest.fixture
def wakes() -> Iterator[list[str]]:
    """Records each wake of billing's relays in this process."""
    woken: list[str] = []

    def record() -> None:
        woken.append("billing")

    outbox_wake.register("billing", record)
    yield woken
    outbox_wake.unregister("billing", record)


async def received_ids(probe: Probe, count: int) -> list[UUID]:
    received: list[UUID] = []

    async def arrived() -> bool:
        received.extend(event.id for event in await probe.drain())
        return len(received) >= count

    await support.eventually(arrived, timeout=5.0)
    return received


class TestWakeOnCommit:
    async def test_commit_of_a_session_that_added_events_wakes_the_relays_once(
        self, db: Db, wakes: list[str]
    ) -> None:
        _, sessions = db
        async with sessions() as session:
            await outbox.add(session, topped_up())
            await outbox.add_all(session, [topped_up(), topped_up()])
            assert wakes == [], "nothing is woken before the commit"
            await session.commit()
        assert wakes == ["billing"]

    async def test_rolled_back_or_eventless_transactions_wake_nobody(
        self, db: Db, wakes: list[str]
    ) -> None:
        _, sessions = db
        async with sessions() as session:
            await outbox.add(session, topped_up())
            await session.rollback()
            await session.commit()  # a later transaction of the same session, with no event
        assert wakes == []


class TestRelayWokenInProcess:
    async def test_relay_without_listen_publishes_a_commit_of_its_process_at_once(
        self, db: Db, broker: Broker, probe: Probe
    ) -> None:
        engine, sessions = db
        relay = OutboxRelay(engine, broker, schema="billing", poll_interval=POLL, listen=False)
        task = asyncio.create_task(relay.run())
        try:
            await asyncio.sleep(0.3)  # the relay drained the empty outbox and sleeps
            async with sessions() as session:
                envelope = await outbox.add(session, topped_up())
                await session.commit()

            assert await received_ids(probe, 1) == [envelope.id]
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert outbox_wake.wake("billing") == 0, "a stopped relay is no longer registered"

    async def test_commit_on_another_thread_and_loop_wakes_the_relay_on_its_own_loop(
        self, db: Db, broker: Broker, probe: Probe, service_settings: ServiceSettings
    ) -> None:
        engine, _ = db
        relay = OutboxRelay(engine, broker, schema="billing", poll_interval=POLL, listen=False)
        task = asyncio.create_task(relay.run())

        async def add_and_commit() -> UUID:
            other_engine, other_sessions = make_database(
                service_settings, service="billing_api", schema="billing", pool_size=1
            )
            try:
                async with other_sessions() as session:
                    envelope = await outbox.add(session, topped_up())
                    await session.commit()
                return envelope.id
            finally:
                await other_engine.dispose()

        try:
            await asyncio.sleep(0.3)
            sent = await asyncio.to_thread(asyncio.run, add_and_commit())

            assert await received_ids(probe, 1) == [sent]
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
