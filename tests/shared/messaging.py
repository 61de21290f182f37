"""Helpers for the outbox and consumer tests: a scratch effect table and a probe queue."""

from __future__ import annotations

from uuid import UUID, uuid4

import sqlalchemy as sa
from aio_pika.abc import AbstractQueue, AbstractRobustChannel
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from shared import events
from shared.broker import QUORUM, Broker
from shared.money import Money

EFFECTS = "scratch.effect"


async def reset_tables(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(sa.text("CREATE SCHEMA IF NOT EXISTS scratch"))
        await conn.execute(
            sa.text(
                f"CREATE TABLE IF NOT EXISTS {EFFECTS}"
                " (event_id uuid NOT NULL, amount bigint NOT NULL, correlation_id text)"
            )
        )
        await conn.execute(sa.text(f"TRUNCATE {EFFECTS}, outbox, inbox"))


def topped_up(amount: int = 500, user_id: UUID | None = None) -> events.WalletToppedUp:
    return events.WalletToppedUp(
        user_id=user_id or uuid4(),
        email="viewer@example.com",
        amount=Money(amount=amount, currency="RUB"),
        balance=Money(amount=amount, currency="RUB"),
    )


async def record_effect(
    session: AsyncSession, event: events.Envelope[events.WalletToppedUp]
) -> None:
    """A handler with a visible effect: one row per handled event."""
    await session.execute(
        sa.text(f"INSERT INTO {EFFECTS} VALUES (:id, :amount, :cid)"),
        {"id": event.id, "amount": event.data.amount.amount, "cid": event.correlation_id},
    )


async def effects(engine: AsyncEngine) -> list[tuple[UUID, int, str | None]]:
    async with engine.connect() as conn:
        rows = await conn.execute(sa.text(f"SELECT * FROM {EFFECTS} ORDER BY event_id"))
        return [(row[0], row[1], row[2]) for row in rows]


async def unpublished(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        count = await conn.scalar(sa.text("SELECT count(*) FROM outbox WHERE published_at IS NULL"))
        return int(count or 0)


class Probe:
    """A queue bound to one event type that a test reads to see what reached the broker."""

    def __init__(self, channel: AbstractRobustChannel, queue: AbstractQueue) -> None:
        self.channel = channel
        self.queue = queue

    @classmethod
    async def bind(cls, broker: Broker, event_type: str) -> Probe:
        return await cls.bind_many(broker, (event_type,))

    @classmethod
    async def bind_many(cls, broker: Broker, patterns: tuple[str, ...]) -> Probe:
        channel = await broker.channel()
        exchange = await channel.get_exchange(broker.name("cinema.events"))
        queue = await channel.declare_queue(
            broker.name(f"probe.{uuid4().hex[:8]}"), durable=True, arguments=dict(QUORUM)
        )
        for pattern in patterns:
            await queue.bind(exchange, routing_key=pattern)
        return cls(channel, queue)

    async def drain(self) -> list[events.Envelope[events.EventPayload]]:
        return [events.decode(body) for body in await self.drain_bodies()]

    async def drain_bodies(self) -> list[bytes]:
        """The bodies of the messages waiting, as they travelled."""
        received = []
        while (message := await self.queue.get(no_ack=True, fail=False)) is not None:
            received.append(message.body)
        return received

    async def close(self) -> None:
        await self.queue.delete(if_unused=False, if_empty=False)
        await self.channel.close()
