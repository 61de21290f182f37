from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
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
