from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from uuid import UUID

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared import outbox
from shared.broker import Broker
from shared.consumer import Consumer
from shared.outbox import OutboxRelay
from tests import support
from tests.shared.messaging import (
    Probe,
    effects,
    record_effect,
    reset_tables,
    topped_up,
    unpublished,
)

Db = tuple[AsyncEngine, async_sessionmaker[AsyncSession]]


@pytest.fixture
async def db(billing_db: Db) -> Db:
    await reset_tables(billing_db[0])
    return billing_db


@pytest.fixture
async def probe(broker: Broker) -> AsyncIterator[Probe]:
    probe = await Probe.bind(broker, "wallet.topped_up")
    yield probe
    await probe.close()


class RelayCrashed(Exception):
    """Stands for a relay process dying after the broker confirmed, before marking rows."""


async def crash_after_publish(ids: Sequence[UUID]) -> None:
    raise RelayCrashed


class TestAdd:
    async def test_committed_event_is_published_exactly_once(
        self, db: Db, broker: Broker, probe: Probe
    ) -> None:
        engine, sessions = db
        async with sessions() as session:
            envelope = await outbox.add(session, topped_up(700))
            await session.commit()

        relay = OutboxRelay(engine, broker, schema="billing")
        assert await relay.drain() == 1
        assert await relay.drain() == 0

        received = await probe.drain()
        assert [event.id for event in received] == [envelope.id]
        assert received[0].producer == "billing_api"
        assert received[0].data == envelope.data
        assert await unpublished(engine) == 0

    async def test_event_of_rolled_back_transaction_is_never_published(
        self, db: Db, broker: Broker, probe: Probe
    ) -> None:
        engine, sessions = db
        async with sessions() as session:
            await outbox.add(session, topped_up())
            await session.rollback()

        assert await OutboxRelay(engine, broker, schema="billing").drain() == 0
        assert await probe.drain() == []

    async def test_correlation_id_defaults_to_the_current_request_id(self, db: Db) -> None:
        from shared import observability

        _, sessions = db
        observability.set_request_id("req-42")
        try:
            async with sessions() as session:
                envelope = await outbox.add(session, topped_up())
                await session.rollback()
        finally:
            observability.set_request_id(None)
        assert envelope.correlation_id == "req-42"


class TestRelay:
    async def test_two_relays_in_parallel_publish_each_row_once(
        self, db: Db, broker: Broker, probe: Probe
    ) -> None:
        engine, sessions = db
        async with sessions() as session:
            sent = [(await outbox.add(session, topped_up(n))).id for n in range(1, 401)]
            await session.commit()

        first = OutboxRelay(engine, broker, schema="billing", batch_size=25)
        second = OutboxRelay(engine, broker, schema="billing", batch_size=25)
        counts = await asyncio.gather(first.drain(), second.drain())

        received = [event.id for event in await probe.drain()]
        assert sum(counts) == 400
        assert all(counts), "both relays should have taken a share of the rows"
        assert sorted(received) == sorted(sent)
        assert await unpublished(engine) == 0

    async def test_relay_killed_after_publish_republishes_and_inbox_applies_once(
        self, db: Db, broker: Broker
    ) -> None:
        engine, sessions = db
        consumer = Consumer("outbox-crash", broker, sessions, {type(topped_up()): record_effect})
        await consumer.start()
        try:
            async with sessions() as session:
                sent = [(await outbox.add(session, topped_up(n))).id for n in (100, 200, 300)]
                await session.commit()

            crashing = OutboxRelay(
                engine, broker, schema="billing", after_publish=crash_after_publish
            )
            with pytest.raises(RelayCrashed):
                await crashing.drain()
            assert await unpublished(engine) == 3, "rows stay unmarked after the crash"

            assert await OutboxRelay(engine, broker, schema="billing").drain() == 3

            async def all_applied() -> bool:
                return len(await effects(engine)) >= 3

            await support.eventually(all_applied)
            await asyncio.sleep(0.5)  # give the second copies time to arrive and be skipped
            applied = await effects(engine)
            assert sorted(row[0] for row in applied) == sorted(sent)
            assert await unpublished(engine) == 0
        finally:
            await consumer.stop()
            await support.delete_consumer_queues(broker, consumer.queues)

    async def test_run_is_woken_by_a_commit_without_waiting_for_the_poll(
        self, db: Db, broker: Broker, probe: Probe
    ) -> None:
        engine, sessions = db
        relay = OutboxRelay(engine, broker, schema="billing", poll_interval=30.0)
        task = asyncio.create_task(relay.run())
        try:
            await asyncio.sleep(0.3)  # the relay is now idle, listening
            async with sessions() as session:
                envelope = await outbox.add(session, topped_up())
                await session.commit()

            received: list[UUID] = []

            async def published() -> bool:
                received.extend(event.id for event in await probe.drain())
                return bool(received)

            await support.eventually(published, timeout=5.0)
            assert received == [envelope.id]
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
