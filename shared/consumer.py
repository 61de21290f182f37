"""Consuming events: decode, dedupe through the inbox, run the handler, ack after commit.

A handler is a plain typed async function ``async def on_x(session, event) -> None``. Everything
around it lives here, once:

* the event id is recorded in the service's ``inbox`` in the handler's own transaction, so a
  redelivered event (a relay that published twice, a consumer that died before acking) does
  nothing the second time;
* the message is acknowledged only after the transaction committed;
* a handler that raises is retried through the consumer's delay queues (backoff), then the message
  goes to ``<consumer>.dead`` with the last error, where ``cinema dlq`` lists and replays it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustChannel
from prometheus_client import Counter
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared import events, observability
from shared.broker import Broker, ConsumerQueues, declare_consumer_queues, make_message
from shared.settings import ServiceSettings
from shared.tables import inbox

logger = logging.getLogger(__name__)

Handler = Callable[[AsyncSession, events.Envelope[Any]], Awaitable[None]]

DEFAULT_RETRY_DELAYS: tuple[float, ...] = (1.0, 5.0, 30.0, 120.0)
# Handlers in flight at once: somewhat more than the connection pool, so a connection given back
# is taken at once; many more would only wait on the pool.
PREFETCH = 16
ATTEMPT_HEADER = "x-attempt"
ERROR_HEADER = "x-last-error"

MESSAGES = Counter(
    "consumer_messages_total", "Events handled by consumers.", ["consumer", "type", "outcome"]
)


def attempt_of(message: AbstractIncomingMessage) -> int:
    """Which delivery attempt this is (1 for a message fresh from the exchange)."""
    value = message.headers.get(ATTEMPT_HEADER)
    return value if isinstance(value, int) and value > 0 else 1


async def record_in_inbox(session: AsyncSession, consumer: str, event_id: Any) -> bool:
    """Remember that ``consumer`` handled ``event_id``; False when it already had."""
    result = await session.execute(
        insert(inbox)
        .values(consumer=consumer, event_id=event_id)
        .on_conflict_do_nothing()
        .returning(inbox.c.event_id)
    )
    return result.first() is not None


class Consumer:
    """One named consumer: its queues, its handlers by event class, its retry policy."""

    def __init__(
        self,
        name: str,
        broker: Broker,
        session_factory: async_sessionmaker[AsyncSession],
        handlers: Mapping[type[events.EventPayload], Handler],
        *,
        retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
        prefetch: int = PREFETCH,
    ) -> None:
        self.name = name
        self.broker = broker
        self.session_factory = session_factory
        self.handlers = {payload.event_type: handler for payload, handler in handlers.items()}
        self.queues = ConsumerQueues(broker.prefix, name, retry_delays)
        self.prefetch = prefetch
        self._channel: AbstractRobustChannel | None = None
        self._queue: AbstractQueue | None = None
        self._tag: str | None = None

    @property
    def max_attempts(self) -> int:
        return len(self.queues.retries) + 1

    async def declare(self) -> AbstractQueue:
        channel = await self.broker.channel(prefetch=self.prefetch)
        exchange = await channel.get_exchange(self.broker.name("cinema.events"), ensure=True)
        self._channel = channel
        self._queue = await declare_consumer_queues(channel, exchange, self.queues, self.handlers)
        return self._queue

    async def start(self) -> None:
        """Declare the topology and start consuming in the background."""
        queue = await self.declare()
        self._tag = await queue.consume(self.process)

    async def stop(self) -> None:
        if self._queue is not None and self._tag is not None:
            await self._queue.cancel(self._tag)
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()
        self._queue = self._channel = None
        self._tag = None

    async def process(self, message: AbstractIncomingMessage) -> None:
        """Handle one delivery; never raises (the outcome is an ack or a re-route)."""
        try:
            envelope = events.decode(message.body)
        except Exception as exc:
            logger.error("undecodable event dead-lettered", extra={"consumer": self.name})
            await self._dead_letter(message, f"undecodable: {exc}")
            MESSAGES.labels(self.name, message.type or "?", "undecodable").inc()
            return
        handler = self.handlers.get(envelope.type)
        observability.set_request_id(envelope.correlation_id)
        try:
            if handler is None:  # bound once, no longer handled: nothing to do
                outcome = "ignored"
            else:
                outcome = await self._handle(handler, envelope)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._retry_or_dead_letter(message, envelope, exc)
            return
        await message.ack()
        MESSAGES.labels(self.name, envelope.type, outcome).inc()

    async def _handle(self, handler: Handler, envelope: events.Envelope[Any]) -> str:
        async with self.session_factory() as session:
            if not await record_in_inbox(session, self.name, envelope.id):
                await session.rollback()
                return "duplicate"
            await handler(session, envelope)
            await session.commit()
        return "handled"

    async def _retry_or_dead_letter(
        self, message: AbstractIncomingMessage, envelope: events.Envelope[Any], exc: Exception
    ) -> None:
        attempt = attempt_of(message)
        error = f"{type(exc).__name__}: {exc}"[:1000]
        if attempt < self.max_attempts:
            logger.warning(
                "handler failed; retrying",
                extra={"consumer": self.name, "event_id": str(envelope.id), "attempt": attempt},
                exc_info=exc,
            )
            await self._send(message, self.queues.retries[attempt - 1], attempt + 1, error)
            MESSAGES.labels(self.name, envelope.type, "retried").inc()
        else:
            logger.error(
                "handler failed for the last time; dead-lettered",
                extra={"consumer": self.name, "event_id": str(envelope.id), "attempt": attempt},
                exc_info=exc,
            )
            await self._dead_letter(message, error)
            MESSAGES.labels(self.name, envelope.type, "dead").inc()

    async def _dead_letter(self, message: AbstractIncomingMessage, error: str) -> None:
        attempt = attempt_of(message)
        await self._send(message, self.queues.dead, attempt, error)

    async def _send(
        self, message: AbstractIncomingMessage, queue: str, attempt: int, error: str
    ) -> None:
        """Copy the message into ``queue`` (confirmed), then ack the original."""
        assert self._channel is not None
        headers = {**message.headers, ATTEMPT_HEADER: attempt, ERROR_HEADER: error}
        await self._channel.default_exchange.publish(
            make_message(
                message.body,
                message.type or "",
                message.message_id or "",
                message.correlation_id,
                headers,
            ),
            routing_key=queue,
        )
        await message.ack()


async def declare_consumer(
    settings: ServiceSettings,
    name: str,
    event_types: Iterable[type[events.EventPayload]],
    *,
    retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
) -> ConsumerQueues:
    """Declare one consumer's queues and bindings without consuming (deploy step).

    Run before any service publishes, so an event published before the consumer's process
    first starts (the demo catalog's ``plan.changed``, say) waits in its queue instead of being
    routed nowhere.
    """
    broker = Broker(settings.amqp_url, prefix=settings.broker_prefix, client_name=f"{name}-setup")
    await broker.connect()
    try:
        channel = await broker.channel()
        exchange = await channel.get_exchange(broker.name("cinema.events"), ensure=True)
        queues = ConsumerQueues(broker.prefix, name, retry_delays)
        await declare_consumer_queues(
            channel, exchange, queues, [event.event_type for event in event_types]
        )
        await channel.close()
    finally:
        await broker.close()
    return queues


def add_declare_command(
    group: Any,
    *,
    consumer: str,
    event_types: Callable[[], Iterable[type[events.EventPayload]]],
    settings_type: type[ServiceSettings],
) -> None:
    """Add ``declare-queues`` to a service's command group (run by ``make migrate``)."""
    parser = group.add_parser(
        "declare-queues", help=f"declare the {consumer} consumer's queues and bindings"
    )

    def run(args: Any) -> int:
        queues = asyncio.run(declare_consumer(settings_type(), consumer, event_types()))
        print(f"declared {queues.main} (+ retry and dead-letter queues)")
        return 0

    parser.set_defaults(handler=run)
