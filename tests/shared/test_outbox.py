from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any
from uuid import UUID

import orjson
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared import events, outbox
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


@contextlib.contextmanager
def counting_statements(engine: AsyncEngine) -> Iterator[list[str]]:
    """Every statement sent through ``engine`` while the block runs (nothing else uses it here)."""
    sent: list[str] = []

    def record(connection: Any, cursor: Any, statement: str, *args: Any) -> None:
        sent.append(statement)

    sa.event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        sa.event.remove(engine.sync_engine, "before_cursor_execute", record)


async def stored_payload(engine: AsyncEngine, event_id: UUID) -> bytes:
    async with engine.connect() as conn:
        payload = await conn.scalar(
            sa.text("SELECT payload FROM outbox WHERE id = :id"), {"id": event_id}
        )
    assert isinstance(payload, bytes)
    return payload


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

    async def test_the_stored_bytes_are_published_as_they_are(
        self, db: Db, broker: Broker, probe: Probe
    ) -> None:
        engine, sessions = db
        async with sessions() as session:
            envelope = await outbox.add(session, topped_up(700))
            await session.commit()
        stored = await stored_payload(engine, envelope.id)

        await OutboxRelay(engine, broker, schema="billing").drain()

        assert await probe.drain_bodies() == [stored]
        assert stored == events.encode(envelope)
        assert events.decode(stored) == envelope

    async def test_events_of_one_change_take_one_statement_and_keep_their_order(
        self, db: Db, broker: Broker, probe: Probe
    ) -> None:
        engine, sessions = db
        async with sessions() as session:
            with counting_statements(engine) as sent:
                added = await outbox.add_all(session, [topped_up(n) for n in range(1, 6)])
            await session.commit()

        assert len(sent) == 1
        await OutboxRelay(engine, broker, schema="billing", batch_size=2).drain()
        assert [event.id for event in await probe.drain()] == [event.id for event in added]

    async def test_events_collected_in_a_block_take_one_statement_in_the_order_added(
        self, db: Db, broker: Broker, probe: Probe
    ) -> None:
        engine, sessions = db
        async with sessions() as session:
            first = await outbox.add(session, topped_up(1))
            with counting_statements(engine) as sent:
                async with outbox.collected(session):
                    added = [await outbox.add(session, topped_up(n)) for n in range(2, 5)]
                    added += await outbox.add_all(session, [topped_up(5), topped_up(6)])
                    assert sent == [], "nothing is written before the block ends"
            last = await outbox.add(session, topped_up(7))
            await session.commit()

        assert len(sent) == 1
        await OutboxRelay(engine, broker, schema="billing", batch_size=3).drain()
        assert [event.id for event in await probe.drain()] == [
            event.id for event in [first, *added, last]
        ]

    async def test_a_block_that_fails_writes_none_of_its_events(self, db: Db) -> None:
        _, sessions = db

        async def settle(session: AsyncSession) -> None:
            async with outbox.collected(session):
                await outbox.add(session, topped_up())
                raise RuntimeError("settling failed")

        async with sessions() as session:
            with pytest.raises(RuntimeError, match="settling failed"):
                await settle(session)
            assert await session.scalar(sa.text("SELECT count(*) FROM outbox")) == 0
            await session.rollback()

    async def test_a_savepoint_inside_a_block_is_refused(self, db: Db) -> None:
        _, sessions = db
        async with sessions() as session, session.begin(), outbox.collected(session):
            await outbox.add(session, topped_up())
            with pytest.raises(RuntimeError, match="savepoint"):
                await session.begin_nested()

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

    async def test_a_batch_is_claimed_and_stamped_in_one_statement(
        self, db: Db, broker: Broker, probe: Probe
    ) -> None:
        engine, sessions = db
        async with sessions() as session:
            await outbox.add_all(session, [topped_up(n) for n in (1, 2, 3)])
            await session.commit()

        with counting_statements(engine) as sent:
            assert await OutboxRelay(engine, broker, schema="billing").drain() == 3

        # One claim-and-stamp; the batch was short, so no empty claim follows it.
        assert len(sent) == 1
        assert len(await probe.drain()) == 3
        assert await unpublished(engine) == 0

    async def test_run_is_woken_by_notify_from_another_process_without_waiting_for_the_poll(
        self, db: Db, broker: Broker, probe: Probe
    ) -> None:
        engine, _ = db
        relay = OutboxRelay(engine, broker, schema="billing", poll_interval=30.0)
        task = asyncio.create_task(relay.run())
        try:
            await asyncio.sleep(0.3)  # the relay is now idle, listening
            # Written as another process would: no session of this one, so only NOTIFY tells.
            envelope = events.wrap(topped_up(), producer="billing_api")
            async with engine.begin() as conn:
                await conn.execute(
                    sa.text(
                        "INSERT INTO outbox (id, event_type, payload)"
                        " VALUES (:id, :event_type, :payload)"
                    ),
                    {
                        "id": envelope.id,
                        "event_type": envelope.type,
                        "payload": events.encode(envelope),
                    },
                )

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


class TestRollingDeploy:
    """While a deploy rolls, processes of the previous release (which wrote and published a JSON
    ``body``) share the outbox with this one's (stored bytes)."""

    async def test_event_written_by_the_previous_release_is_published_intact(
        self, db: Db, broker: Broker, probe: Probe
    ) -> None:
        engine, _ = db
        envelope = events.wrap(topped_up(900), producer="billing_api", correlation_id="r-1")
        async with engine.begin() as conn:
            await conn.execute(
                sa.text(
                    "INSERT INTO outbox (id, event_type, body, correlation_id)"
                    " VALUES (:id, :event_type, CAST(:body AS jsonb), :correlation_id)"
                ),
                {
                    "id": envelope.id,
                    "event_type": envelope.type,
                    "body": orjson.dumps(envelope.model_dump(mode="json")).decode(),
                    "correlation_id": envelope.correlation_id,
                },
            )

        assert await OutboxRelay(engine, broker, schema="billing").drain() == 1
        assert await probe.drain() == [envelope]

    async def test_event_written_now_is_what_a_relay_of_the_previous_release_would_publish(
        self, db: Db
    ) -> None:
        engine, sessions = db
        async with sessions() as session:
            envelope = await outbox.add(session, topped_up(900))
            await session.commit()

        async with engine.connect() as conn:
            body = await conn.scalar(
                sa.text("SELECT body FROM outbox WHERE id = :id"), {"id": envelope.id}
            )
        # The previous relay published orjson.dumps(body).
        assert events.decode(orjson.dumps(body)) == envelope
