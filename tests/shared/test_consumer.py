from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared import events
from shared.broker import Broker
from shared.consumer import Consumer, declare_consumer
from shared.dead_letters import list_dead_letters, replay_dead_letters
from shared.settings import ServiceSettings
from tests import support
from tests.shared.messaging import effects, record_effect, reset_tables, topped_up

Db = tuple[AsyncEngine, async_sessionmaker[AsyncSession]]
ToppedUp = events.Envelope[events.WalletToppedUp]


@pytest.fixture
async def db(billing_db: Db) -> Db:
    await reset_tables(billing_db[0])
    return billing_db


class Flaky:
    """A handler that fails ``failures`` times, then records its effect."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def __call__(self, session: AsyncSession, event: ToppedUp) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise RuntimeError(f"boom #{self.calls}")
        await record_effect(session, event)


@pytest.fixture
async def make_consumer(broker: Broker, db: Db) -> AsyncIterator[type[Consumer]]:
    started: list[Consumer] = []

    class Started(Consumer):
        async def start(self) -> None:
            started.append(self)
            await super().start()

    yield Started
    for consumer in started:
        await consumer.stop()
        await support.delete_consumer_queues(broker, consumer.queues)


async def publish(broker: Broker, envelope: events.Envelope[Any]) -> None:
    await broker.publish(
        events.encode(envelope),
        routing_key=envelope.type,
        message_id=str(envelope.id),
        correlation_id=envelope.correlation_id,
    )


def envelope(amount: int = 500, correlation_id: str | None = None) -> ToppedUp:
    return events.wrap(topped_up(amount), producer="tests", correlation_id=correlation_id)


class TestDelivery:
    async def test_duplicate_delivery_has_one_effect(
        self, db: Db, broker: Broker, make_consumer: type[Consumer]
    ) -> None:
        engine, sessions = db
        consumer = make_consumer("dup", broker, sessions, {events.WalletToppedUp: record_effect})
        await consumer.start()
        event = envelope(900, correlation_id="req-7")

        await publish(broker, event)
        await publish(broker, event)

        await support.eventually(lambda: _count_at_least(engine, 1))
        await asyncio.sleep(0.5)
        assert await effects(engine) == [(event.id, 900, "req-7")]

    async def test_events_of_other_types_do_not_reach_the_consumer(
        self, db: Db, broker: Broker, make_consumer: type[Consumer]
    ) -> None:
        engine, sessions = db
        consumer = make_consumer("typed", broker, sessions, {events.WalletToppedUp: record_effect})
        await consumer.start()
        other = events.wrap(
            events.PlanChanged(plan_id=topped_up().user_id, code="p", version=1, all_movies=True),
            producer="tests",
        )
        await publish(broker, other)
        await publish(broker, wanted := envelope(5))

        await support.eventually(lambda: _count_at_least(engine, 1))
        assert [row[0] for row in await effects(engine)] == [wanted.id]


class TestFailures:
    async def test_failing_handler_is_retried_until_it_succeeds(
        self, db: Db, broker: Broker, make_consumer: type[Consumer]
    ) -> None:
        engine, sessions = db
        handler = Flaky(failures=2)
        consumer = make_consumer(
            "flaky",
            broker,
            sessions,
            {events.WalletToppedUp: handler},
            retry_delays=(0.1, 0.2, 0.3),
        )
        await consumer.start()
        event = envelope(300)
        await publish(broker, event)

        await support.eventually(lambda: _count_at_least(engine, 1))
        assert handler.calls == 3
        assert await effects(engine) == [(event.id, 300, None)]
        assert await list_dead_letters(broker, "flaky") == []

    async def test_handler_failing_every_time_ends_in_dead_letters_and_can_be_replayed(
        self, db: Db, broker: Broker, make_consumer: type[Consumer]
    ) -> None:
        engine, sessions = db
        handler = Flaky(failures=3)
        consumer = make_consumer(
            "doomed", broker, sessions, {events.WalletToppedUp: handler}, retry_delays=(0.1, 0.1)
        )
        await consumer.start()
        event = envelope(250)
        await publish(broker, event)

        async def dead() -> bool:
            return len(await list_dead_letters(broker, "doomed")) == 1

        await support.eventually(dead)
        [letter] = await list_dead_letters(broker, "doomed")
        assert (letter.event_id, letter.event_type, letter.attempts) == (
            str(event.id),
            "wallet.topped_up",
            3,
        )
        assert "boom #3" in letter.error
        assert handler.calls == 3
        assert await effects(engine) == []
        assert len(await list_dead_letters(broker, "doomed")) == 1, "listing leaves them in place"

        replayed = await replay_dead_letters(broker, "doomed")  # the 4th call succeeds

        assert [item.event_id for item in replayed] == [str(event.id)]
        await support.eventually(lambda: _count_at_least(engine, 1))
        assert await effects(engine) == [(event.id, 250, None)]
        assert await list_dead_letters(broker, "doomed") == []

    async def test_undecodable_message_goes_straight_to_dead_letters(
        self, db: Db, broker: Broker, make_consumer: type[Consumer]
    ) -> None:
        _, sessions = db
        consumer = make_consumer("strict", broker, sessions, {events.WalletToppedUp: record_effect})
        await consumer.start()
        await broker.publish(
            b'{"type": "wallet.topped_up", "data": {}}',
            routing_key="wallet.topped_up",
            message_id="bad-1",
        )

        async def dead() -> bool:
            return len(await list_dead_letters(broker, "strict")) == 1

        await support.eventually(dead)
        [letter] = await list_dead_letters(broker, "strict")
        assert letter.event_id == "bad-1"
        assert letter.error.startswith("undecodable")


async def _count_at_least(engine: AsyncEngine, n: int) -> bool:
    return len(await effects(engine)) >= n


class TestDeclaredAhead:
    async def test_an_event_published_before_the_consumer_first_starts_still_reaches_it(
        self,
        db: Db,
        broker: Broker,
        make_consumer: type[Consumer],
        service_settings: ServiceSettings,
    ) -> None:
        engine, sessions = db
        await declare_consumer(service_settings, "ahead", [events.WalletToppedUp])
        early = envelope(700)
        await publish(broker, early)

        consumer = make_consumer("ahead", broker, sessions, {events.WalletToppedUp: record_effect})
        await consumer.start()
        await support.eventually(lambda: _count_at_least(engine, 1))
        assert [row[0] for row in await effects(engine)] == [early.id]


# --- batches ---------------------------------------------------------------------------------


class Recorder:
    """Records each event's effect and the transaction it ran in; fails for a ``poison`` amount."""

    def __init__(self, poison: int | None = None) -> None:
        self.poison = poison
        self.transactions: dict[UUID, set[int]] = {}

    async def __call__(self, session: AsyncSession, event: ToppedUp) -> None:
        txid = int(await session.scalar(sa.text("SELECT txid_current()")) or 0)
        self.transactions.setdefault(event.id, set()).add(txid)
        if event.data.amount.amount == self.poison:
            raise RuntimeError("poison")
        await record_effect(session, event)


@pytest.fixture
def inbox_statements(db: Db) -> Iterator[list[str]]:
    """Every INSERT into the inbox the database is sent while the test runs."""
    seen: list[str] = []

    def listen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("INSERT INTO inbox"):
            seen.append(statement)

    engine = db[0].sync_engine
    sa.event.listen(engine, "before_cursor_execute", listen)
    yield seen
    sa.event.remove(engine, "before_cursor_execute", listen)


async def start_on_waiting(
    consumer: Consumer, settings: ServiceSettings, waiting: Sequence[events.Envelope[Any] | bytes]
) -> None:
    """Publish ``waiting`` into the consumer's declared queue, then start it: with one batch in
    flight and a long gathering window, the messages arrive as one batch."""
    await declare_consumer(
        settings, consumer.name, [events.WalletToppedUp], retry_delays=consumer.queues.retry_delays
    )
    for item in waiting:
        if isinstance(item, bytes):
            await consumer.broker.publish(item, routing_key="wallet.topped_up", message_id="bad-1")
        else:
            await publish(consumer.broker, item)
    await consumer.start()


def batch_options(**options: Any) -> dict[str, Any]:
    return {"concurrency": 1, "batch_wait": 0.5, **options}


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class TestBatches:
    async def test_a_batch_is_handled_once_each_in_one_transaction_with_one_inbox_statement(
        self,
        db: Db,
        broker: Broker,
        make_consumer: type[Consumer],
        service_settings: ServiceSettings,
        inbox_statements: list[str],
    ) -> None:
        engine, sessions = db
        handler = Recorder()
        consumer = make_consumer(
            "batched", broker, sessions, {events.WalletToppedUp: handler}, **batch_options()
        )
        batch = [envelope(100 + n) for n in range(5)]

        await start_on_waiting(consumer, service_settings, batch)

        await support.eventually(lambda: _count_at_least(engine, 5))
        await asyncio.sleep(0.3)
        assert sorted(await effects(engine)) == sorted(
            (e.id, e.data.amount.amount, None) for e in batch
        )
        assert len(inbox_statements) == 1
        assert len(set.union(*handler.transactions.values())) == 1, "one transaction"
        assert metric("consumer_batch_size_sum", consumer="batched") == 5

    async def test_redelivered_and_repeated_ids_in_a_batch_are_acked_without_effect(
        self,
        db: Db,
        broker: Broker,
        make_consumer: type[Consumer],
        service_settings: ServiceSettings,
    ) -> None:
        engine, sessions = db
        handler = Recorder()
        consumer = make_consumer(
            "redelivered", broker, sessions, {events.WalletToppedUp: handler}, **batch_options()
        )
        seen, fresh, other = envelope(10), envelope(20), envelope(30)
        await start_on_waiting(consumer, service_settings, [seen])
        await support.eventually(lambda: _count_at_least(engine, 1))
        await consumer.stop()

        await publish(broker, seen)  # handled before
        await publish(broker, fresh)
        await publish(broker, fresh)  # twice in the same batch
        await publish(broker, other)
        await consumer.start()

        await support.eventually(lambda: _count_at_least(engine, 3))
        await asyncio.sleep(0.3)
        assert sorted(await effects(engine)) == sorted(
            [(seen.id, 10, None), (fresh.id, 20, None), (other.id, 30, None)]
        )
        assert {event_id: len(runs) for event_id, runs in handler.transactions.items()} == {
            seen.id: 1,
            fresh.id: 1,
            other.id: 1,
        }
        assert (
            metric(
                "consumer_messages_total",
                consumer="redelivered",
                type="wallet.topped_up",
                outcome="duplicate",
            )
            == 2
        )
        assert await _queue_empty(broker, consumer), "every message was acked"

    async def test_a_poison_message_goes_to_dead_letters_and_the_rest_apply_exactly_once(
        self,
        db: Db,
        broker: Broker,
        make_consumer: type[Consumer],
        service_settings: ServiceSettings,
    ) -> None:
        engine, sessions = db
        handler = Recorder(poison=13)
        consumer = make_consumer(
            "poisoned",
            broker,
            sessions,
            {events.WalletToppedUp: handler},
            **batch_options(retry_delays=(0.1,)),
        )
        good = [envelope(100 + n) for n in range(4)]
        poison = envelope(13)
        garbage = b'{"type": "wallet.topped_up", "data": {}}'

        await start_on_waiting(consumer, service_settings, [good[0], poison, garbage, *good[1:]])

        async def dead() -> bool:
            return len(await list_dead_letters(broker, "poisoned")) == 2

        await support.eventually(dead)
        await asyncio.sleep(0.3)
        letters = {
            letter.event_id: letter for letter in await list_dead_letters(broker, "poisoned")
        }
        assert set(letters) == {str(poison.id), "bad-1"}
        assert (letters[str(poison.id)].attempts, letters[str(poison.id)].error) == (
            2,
            "RuntimeError: poison",
        )
        assert sorted(await effects(engine)) == sorted(
            (e.id, e.data.amount.amount, None) for e in good
        )
        assert await _queue_empty(broker, consumer)

    async def test_a_batch_failing_in_the_database_is_handled_again_one_by_one(
        self,
        db: Db,
        broker: Broker,
        make_consumer: type[Consumer],
        service_settings: ServiceSettings,
    ) -> None:
        engine, sessions = db
        handler = Recorder()
        batch_calls: list[int] = []

        async def deadlocking(session: AsyncSession, batch: Sequence[ToppedUp]) -> None:
            batch_calls.append(len(batch))
            await session.execute(
                sa.text(
                    "DO $$ BEGIN RAISE EXCEPTION 'deadlock detected'"
                    " USING ERRCODE = 'deadlock_detected'; END $$"
                )
            )

        consumer = make_consumer(
            "fallback",
            broker,
            sessions,
            {events.WalletToppedUp: handler},
            batch_handlers={events.WalletToppedUp: deadlocking},
            **batch_options(),
        )
        batch = [envelope(200 + n) for n in range(4)]

        await start_on_waiting(consumer, service_settings, batch)

        await support.eventually(lambda: _count_at_least(engine, 4))
        await asyncio.sleep(0.3)
        assert batch_calls == [4]
        assert sorted(await effects(engine)) == sorted(
            (e.id, e.data.amount.amount, None) for e in batch
        )
        runs = [next(iter(runs)) for runs in handler.transactions.values()]
        assert len(runs) == len(set(runs)) == 4, "each event in a transaction of its own"
        assert metric("consumer_batches_total", consumer="fallback", outcome="fallback") == 1
        assert await list_dead_letters(broker, "fallback") == []

    async def test_many_events_over_concurrent_batches_are_acked_once_and_never_come_back(
        self,
        db: Db,
        broker: Broker,
        make_consumer: type[Consumer],
        service_settings: ServiceSettings,
    ) -> None:
        engine, sessions = db
        consumer = make_consumer(
            "many",
            broker,
            sessions,
            {events.WalletToppedUp: record_effect},
            concurrency=3,
            batch_max=40,
        )
        waiting = [envelope(n + 1) for n in range(300)]

        await start_on_waiting(consumer, service_settings, waiting)

        await support.eventually(lambda: _count_at_least(engine, 300), timeout=30)
        assert await _queue_empty(broker, consumer)
        assert len(await effects(engine)) == 300
        outcomes = {
            outcome: metric(
                "consumer_messages_total", consumer="many", type="wallet.topped_up", outcome=outcome
            )
            for outcome in ("handled", "duplicate")
        }
        assert outcomes == {"handled": 300, "duplicate": 0}, "no delivery came back"
        assert metric("consumer_batch_size_count", consumer="many") < 300


async def _queue_empty(broker: Broker, consumer: Consumer) -> bool:
    """Nothing left unacked: the main queue holds no message once the consumer lets go."""
    await consumer.stop()
    channel = await broker.channel()
    queue = await channel.declare_queue(consumer.queues.main, passive=True)
    count = queue.declaration_result.message_count
    await channel.close()
    return count == 0


class TestBrokerRefusals:
    async def test_a_retry_the_broker_refuses_strands_no_other_message_of_the_batch(
        self,
        db: Db,
        broker: Broker,
        make_consumer: type[Consumer],
        service_settings: ServiceSettings,
    ) -> None:
        engine, sessions = db
        consumer = make_consumer(
            "refused",
            broker,
            sessions,
            {events.WalletToppedUp: Recorder(poison=13)},
            **batch_options(retry_delays=(0.1,)),
        )
        good = [envelope(100 + n) for n in range(3)]

        await start_on_waiting(consumer, service_settings, [envelope(13), *good])
        # while the batch gathers: the poison's retry will come back unroutable
        channel = await broker.channel()
        await channel.queue_delete(consumer.queues.retries[0])
        await channel.close()

        await support.eventually(lambda: _count_at_least(engine, 3))
        assert sorted(await effects(engine)) == sorted(
            (e.id, e.data.amount.amount, None) for e in good
        )
        refused = {"consumer": "refused", "type": "wallet.topped_up"}
        assert metric("consumer_messages_total", **refused, outcome="retried") == 0
        assert metric("consumer_messages_total", **refused, outcome="handled") == 3


class TestChannelReopened:
    async def test_a_batch_in_flight_when_its_channel_reopens_is_applied_once_and_acked(
        self,
        db: Db,
        broker: Broker,
        make_consumer: type[Consumer],
        service_settings: ServiceSettings,
    ) -> None:
        engine, sessions = db
        entered, release = asyncio.Event(), asyncio.Event()

        async def held(session: AsyncSession, event: ToppedUp) -> None:
            if event.data.amount.amount == 1:
                entered.set()
                await release.wait()
            await record_effect(session, event)

        consumer = make_consumer(
            "reopened",
            broker,
            sessions,
            {events.WalletToppedUp: held},
            **batch_options(concurrency=2),
        )
        batch = [envelope(1), envelope(2), envelope(3)]
        await start_on_waiting(consumer, service_settings, batch)
        await asyncio.wait_for(entered.wait(), 10)

        # a stale delivery tag: the broker closes the channel, which reopens and numbers its
        # deliveries from 1 again; the batch in flight can no longer ack what it holds
        assert consumer._channel is not None
        underlay = await consumer._channel.get_underlay_channel()
        await underlay.basic_ack(10_000)

        async def redelivered() -> bool:
            duplicates = metric(
                "consumer_messages_total",
                consumer="reopened",
                type="wallet.topped_up",
                outcome="duplicate",
            )
            return duplicates == 3

        await asyncio.sleep(1.0)  # the copies wait on the inbox rows of the batch in flight
        release.set()
        await support.eventually(redelivered)
        assert sorted(await effects(engine)) == sorted(
            (e.id, e.data.amount.amount, None) for e in batch
        )
        assert await _queue_empty(broker, consumer)
        assert await list_dead_letters(broker, "reopened") == []
