"""RabbitMQ: the connection, the topology and publishing with confirms.

Topology (every name carries the configured prefix):

* ``cinema.events`` — durable topic exchange; the routing key is the event type. Its alternate
  exchange ``cinema.unrouted`` keeps events nobody is bound to yet in the ``cinema.unrouted``
  queue instead of dropping them, so ``mandatory`` publishing never wedges the outbox.
* per consumer ``<name>`` — a durable quorum queue bound to the event types it handles;
  ``<name>.retry.<n>`` — quorum queues whose message TTL is the n-th backoff delay and which
  dead-letter back into ``<name>``; ``<name>.dead`` — the dead-letter queue an operator lists and
  replays (``cinema dlq``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractExchange,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
)
from aio_pika.connection import make_url

logger = logging.getLogger(__name__)

EVENTS_EXCHANGE = "cinema.events"
UNROUTED = "cinema.unrouted"
QUORUM = {"x-queue-type": "quorum"}


class BrokerNotConnected(RuntimeError):
    pass


class Broker:
    """One robust connection with a confirming publish channel; consumers open their own."""

    def __init__(self, url: str, *, prefix: str = "", client_name: str = "cinema") -> None:
        self.url = url
        self.prefix = prefix
        self.client_name = client_name
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._connected = asyncio.Event()

    def name(self, base: str) -> str:
        return f"{self.prefix}{base}"

    @property
    def connection(self) -> AbstractRobustConnection:
        if self._connection is None:
            raise BrokerNotConnected("the broker is not connected")
        return self._connection

    @property
    def is_connected(self) -> bool:
        # A robust connection that lost the broker is not "closed" while it reconnects; its
        # ``connected`` event is what says whether the broker is reachable right now.
        connection = self._connection
        return connection is not None and not connection.is_closed and connection.connected.is_set()

    async def connect(self, *, timeout: float = 10.0) -> None:
        """Connect, open the publishing channel and declare the exchanges, all within ``timeout``.

        A half-made connection is closed again, so a retry never leaves a stray robust
        connection reconnecting in the background.
        """
        # Made before connecting (rather than by ``connect_robust``) so that a connect
        # cancelled half-way, by a process stopping say, still has a connection to close:
        # otherwise its reconnecting task outlives the process's event loop.
        connection = aio_pika.RobustConnection(
            make_url(self.url), client_properties={"connection_name": self.client_name}
        )
        try:
            async with asyncio.timeout(timeout):
                await connection.connect(timeout=timeout)
                channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
                exchange = await declare_events_exchange(channel, self.prefix)
        except BaseException:
            await connection.close()
            raise
        self._connection, self._channel, self._exchange = connection, channel, exchange
        self._connected.set()

    async def wait_connected(self, timeout: float | None = 30.0) -> None:
        """Wait until the first connection is made (later drops are healed by aio-pika);
        ``None`` waits as long as it takes."""
        async with asyncio.timeout(timeout):
            await self._connected.wait()

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
        self._connection = self._channel = self._exchange = None
        self._connected.clear()

    async def channel(self, *, prefetch: int = 0) -> AbstractRobustChannel:
        """A new channel on the shared connection (consumers get their own)."""
        channel = await self.connection.channel(publisher_confirms=True, on_return_raises=True)
        if prefetch:
            await channel.set_qos(prefetch_count=prefetch)
        return channel

    async def publish(
        self,
        body: bytes,
        *,
        routing_key: str,
        message_id: str,
        correlation_id: str | None = None,
        headers: dict[str, Any] | None = None,
    ) -> None:
        """Publish one persistent event and wait for the broker's confirm."""
        if self._exchange is None:
            raise BrokerNotConnected("the broker is not connected")
        await self._exchange.publish(
            make_message(body, routing_key, message_id, correlation_id, headers),
            routing_key=routing_key,
            mandatory=True,
        )

    async def publish_many(
        self,
        messages: Sequence[tuple[str, str, bytes, str | None]],
        *,
        headers: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        """Publish ``(routing_key, message_id, body, correlation_id)`` tuples; confirms overlap.
        ``headers``, when given, holds each message's headers (its trace context), in order.

        The whole batch is queued for writing at once and then its confirms are awaited together
        (aio-pika's ``Exchange.publish`` would wait for each message to be written out before the
        next, one event-loop turn apiece, which in a busy process made a batch of 200 take
        seconds). Order on the channel is kept; a nack or a return raises as with ``publish``.
        """
        if self._channel is None or self._exchange is None or self._channel.is_closed:
            raise BrokerNotConnected("the broker is not connected")
        channel = cast(aiormq.Channel, await self._channel.get_underlay_channel())
        exchange = self._exchange.name
        each_headers = headers if headers is not None else [{}] * len(messages)
        await asyncio.gather(
            *(
                channel.basic_publish(
                    body,
                    exchange=exchange,
                    routing_key=key,
                    properties=make_message(body, key, mid, cid, dict(extra)).properties,
                    mandatory=True,
                    wait=False,
                )
                for (key, mid, body, cid), extra in zip(messages, each_headers, strict=True)
            )
        )


def make_message(
    body: bytes,
    event_type: str,
    message_id: str,
    correlation_id: str | None = None,
    headers: dict[str, Any] | None = None,
) -> aio_pika.Message:
    return aio_pika.Message(
        body,
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=message_id,
        correlation_id=correlation_id,
        type=event_type,
        headers=headers or {},
    )


async def declare_events_exchange(channel: AbstractRobustChannel, prefix: str) -> AbstractExchange:
    unrouted_exchange = await channel.declare_exchange(
        f"{prefix}{UNROUTED}", aio_pika.ExchangeType.FANOUT, durable=True
    )
    unrouted_queue = await channel.declare_queue(
        f"{prefix}{UNROUTED}",
        durable=True,
        arguments={**QUORUM, "x-max-length": 100_000, "x-overflow": "drop-head"},
    )
    await unrouted_queue.bind(unrouted_exchange)
    return await channel.declare_exchange(
        f"{prefix}{EVENTS_EXCHANGE}",
        aio_pika.ExchangeType.TOPIC,
        durable=True,
        arguments={"alternate-exchange": f"{prefix}{UNROUTED}"},
    )


class ConsumerQueues:
    """The names of one consumer's queues."""

    def __init__(self, prefix: str, consumer: str, retry_delays: Sequence[float]) -> None:
        self.main = f"{prefix}{consumer}"
        self.dead = f"{self.main}.dead"
        self.retries = [f"{self.main}.retry.{n}" for n in range(len(retry_delays))]
        self.retry_delays = tuple(retry_delays)


async def declare_consumer_queues(
    channel: AbstractRobustChannel,
    exchange: AbstractExchange,
    queues: ConsumerQueues,
    event_types: Iterable[str],
) -> AbstractQueue:
    """Declare the main, retry and dead-letter queues of a consumer and bind the main one."""
    main = await channel.declare_queue(queues.main, durable=True, arguments=dict(QUORUM))
    for event_type in sorted(set(event_types)):
        await main.bind(exchange, routing_key=event_type)
    for name, delay in zip(queues.retries, queues.retry_delays, strict=True):
        await channel.declare_queue(
            name,
            durable=True,
            arguments={
                **QUORUM,
                "x-message-ttl": int(delay * 1000),
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": queues.main,
            },
        )
    await channel.declare_queue(queues.dead, durable=True, arguments=dict(QUORUM))
    return main
