"""Consuming events: decode, dedupe through the inbox, run the handlers, ack after commit.

A handler is a plain typed async function ``async def on_x(session, event) -> None``. Everything
around it lives here, once.

**Batches.** Deliveries are taken in batches: up to ``batch_max``, gathered for ``batch_wait``
seconds after the first one arrives (:mod:`shared.deliveries`), ``concurrency`` batches at once.
In a batch:

* an undecodable message goes to ``<consumer>.dead`` at once and an event nobody handles any
  more is acked: neither holds up the rest;
* every event id is recorded in the service's ``inbox`` with ONE statement, in the transaction of
  the handlers' effects; an id already there (a redelivery) or met earlier in the same batch is
  acked without being handled;
* the new events are handled in delivery order in ONE transaction, so the events of one payment
  keep their order. An event type with a *batch handler* is given all its events of the batch in
  one call, at the place of the first of them (its order against other types does not matter to
  it); ``around_batch`` wraps the whole run (billing defers its entitlement snapshots to the end of
  the batch: one per user, locked last, in user-id order);
* the messages are acknowledged after the commit, together (:meth:`Deliveries.ack`).

Batches in flight at once may split the events of one payment between them; the handlers' own
locks order those, as they did when messages were handled concurrently one at a time.

**Fallback.** A batch that fails in any way (a handler raises, a deadlock, the database goes away,
the commit fails) is rolled back whole and its messages are then handled one by one on the
single-message path: own transaction with its own inbox row, the per-event handler, commit, ack.
A message that fails there is retried through the consumer's delay queues (backoff, ``x-attempt``
header), then goes to ``<consumer>.dead`` with the last error, where ``cinema dlq`` lists and
replays it. So one poison message never blocks or loses the others. A rolled back run leaves no
effect in the database, but a handler may run twice for one attempt: anything it does outside the
database must be safe to repeat (ours do none). A message coming back from a delay queue failed
before, so it is handled alone rather than risk another batch; with ``batch_max=1`` every
message takes the single-message path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import Any

from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustChannel
from prometheus_client import Counter, Histogram
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared import events, observability, tracing
from shared.broker import Broker, ConsumerQueues, declare_consumer_queues, make_message
from shared.deliveries import Deliveries, Delivery
from shared.inbox import record_all_in_inbox, record_in_inbox
from shared.settings import ServiceSettings

logger = logging.getLogger(__name__)

Handler = Callable[[AsyncSession, events.Envelope[Any]], Awaitable[None]]
BatchHandler = Callable[[AsyncSession, Sequence[events.Envelope[Any]]], Awaitable[None]]
AroundBatch = Callable[[AsyncSession], AbstractAsyncContextManager[None]]

DEFAULT_RETRY_DELAYS: tuple[float, ...] = (1.0, 5.0, 30.0, 120.0)
# Enough deliveries in hand for every batch in flight to be full and the next ones to be waiting.
PREFETCH = 256
BATCH_MAX = 100
BATCH_WAIT = 0.005
# Batches in flight at once, each on its own connection of the pool (10 by default).
CONCURRENCY = 4
# How long stopping waits for the batches in flight to finish before abandoning them.
STOP_GRACE = 5.0
ATTEMPT_HEADER = "x-attempt"
ERROR_HEADER = "x-last-error"

MESSAGES = Counter(
    "consumer_messages_total", "Events handled by consumers.", ["consumer", "type", "outcome"]
)
BATCHES = Counter(
    "consumer_batches_total",
    "Batches of two or more events, committed or fallen back to one by one.",
    ["consumer", "outcome"],
)
BATCH_SIZES = Histogram(
    "consumer_batch_size",
    "Deliveries taken together by a consumer.",
    ["consumer"],
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
)


def attempt_of(message: AbstractIncomingMessage) -> int:
    """Which delivery attempt this is (1 for a message fresh from the exchange)."""
    value = message.headers.get(ATTEMPT_HEADER)
    return value if isinstance(value, int) and value > 0 else 1


Decoded = tuple[Delivery, events.Envelope[Any]]


class Consumer:
    """One named consumer: its queues, its handlers by event class, its batching and retries."""

    def __init__(
        self,
        name: str,
        broker: Broker,
        session_factory: async_sessionmaker[AsyncSession],
        handlers: Mapping[type[events.EventPayload], Handler],
        *,
        batch_handlers: Mapping[type[events.EventPayload], BatchHandler] | None = None,
        around_batch: AroundBatch | None = None,
        retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
        prefetch: int = PREFETCH,
        batch_max: int = BATCH_MAX,
        batch_wait: float = BATCH_WAIT,
        concurrency: int = CONCURRENCY,
    ) -> None:
        self.name = name
        self.broker = broker
        self.session_factory = session_factory
        self.handlers = {payload.event_type: handler for payload, handler in handlers.items()}
        self.batch_handlers = {
            payload.event_type: handler for payload, handler in (batch_handlers or {}).items()
        }
        if missing := sorted(set(self.batch_handlers) - set(self.handlers)):
            raise ValueError(f"batch handlers need a per-event handler for the fallback: {missing}")
        self.around_batch = around_batch
        self.queues = ConsumerQueues(broker.prefix, name, retry_delays)
        self.prefetch = max(prefetch, batch_max)
        self.batch_max = max(batch_max, 1)
        self.batch_wait = batch_wait
        self.concurrency = max(concurrency, 1)
        self._deliveries = Deliveries()
        self._workers: list[asyncio.Task[None]] = []
        self._busy: set[asyncio.Task[Any]] = set()
        self._stopping = False
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
        self._stopping = False
        self._workers = [
            asyncio.create_task(self._work(), name=f"consumer-{self.name}-{n}")
            for n in range(self.concurrency)
        ]
        self._tag = await queue.consume(self._deliveries.receive)

    async def stop(self) -> None:
        """Stop taking deliveries, let the batches in flight finish (bounded), release the rest
        (unacked, the broker delivers them again)."""
        try:
            if self._queue is not None and self._tag is not None:
                await self._queue.cancel(self._tag)
        finally:
            await self._stop_workers()
            self._deliveries.clear()
            if self._channel is not None and not self._channel.is_closed:
                await self._channel.close()
            self._queue = self._channel = None
            self._tag = None

    async def _stop_workers(self) -> None:
        self._stopping = True
        workers, self._workers = self._workers, []
        if not workers:
            return
        for worker in workers:
            if worker not in self._busy:  # waiting for deliveries: nothing to finish
                worker.cancel()
        _, late = await asyncio.wait(workers, timeout=STOP_GRACE)
        for worker in late:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)

    async def _work(self) -> None:
        worker = asyncio.current_task()
        assert worker is not None
        while not self._stopping:
            batch = await self._deliveries.take(self.batch_max, self.batch_wait)
            self._busy.add(worker)
            try:
                await self.process_batch(batch)
            except Exception:  # a last resort: the batch's deliveries stay unacked
                logger.exception("deliveries could not be settled", extra={"consumer": self.name})
            finally:
                self._busy.discard(worker)

    async def process_batch(self, batch: Sequence[Delivery]) -> None:
        """Settle a batch of deliveries (see the module docstring); raises only on broker errors."""
        BATCH_SIZES.labels(self.name).observe(len(batch))
        acks: list[Delivery] = []
        outcomes: list[tuple[str, str]] = []
        together: list[Decoded] = []
        alone: list[Decoded] = []
        for delivery in batch:
            try:
                envelope = events.decode(delivery.message.body)
            except Exception as exc:
                await self._undecodable(delivery, exc)
                continue
            if envelope.type not in self.handlers:  # bound once, no longer handled: nothing to do
                acks.append(delivery)
                outcomes.append((envelope.type, "ignored"))
            elif attempt_of(delivery.message) > 1:
                alone.append((delivery, envelope))
            else:
                together.append((delivery, envelope))
        if len(together) == 1:
            alone.insert(0, together.pop())
        if together:
            headers = {id(envelope): delivery.message.headers for delivery, envelope in together}
            try:
                handled = await self._handle_batch(
                    [envelope for _, envelope in together], headers=headers
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning(
                    "batch rolled back; its events are handled one by one",
                    extra={"consumer": self.name, "size": len(together)},
                    exc_info=exc,
                )
                BATCHES.labels(self.name, "fallback").inc()
                alone[:0] = together
            else:
                BATCHES.labels(self.name, "committed").inc()
                for delivery, envelope in together:
                    acks.append(delivery)
                    outcome = "handled" if id(envelope) in handled else "duplicate"
                    outcomes.append((envelope.type, outcome))
        await self._deliveries.ack(acks)
        for event_type, outcome in outcomes:
            MESSAGES.labels(self.name, event_type, outcome).inc()
        for delivery, envelope in alone:
            await self._process_one(delivery, envelope)

    async def _handle_batch(
        self,
        envelopes: Sequence[events.Envelope[Any]],
        *,
        headers: Mapping[int, Mapping[str, Any]] | None = None,
    ) -> set[int]:
        """Record the batch in the inbox and run its new events in one transaction; the
        ``id()`` of the envelopes that ran. ``headers`` by envelope ``id()``: the messages'
        headers, which carry each event's trace context."""
        async with self.session_factory() as session:
            new = await record_all_in_inbox(session, self.name, (e.id for e in envelopes))
            fresh = []
            for envelope in envelopes:
                if envelope.id in new:
                    new.discard(envelope.id)  # a second copy in this batch is a duplicate
                    fresh.append(envelope)
            if not fresh:
                await session.rollback()
                return set()
            around = self.around_batch(session) if self.around_batch else contextlib.nullcontext()
            # Each event's handler runs in its own trace (see :meth:`_run`); what the batch does
            # around them (billing's deferred snapshots) is in a span linked to them all.
            carriers = [(headers or {}).get(id(envelope)) for envelope in fresh]
            batch_span = tracing.consuming_many(
                carriers, name=f"{self.name} batch", consumer=self.name
            )
            with batch_span:
                async with around:
                    await self._run(session, fresh, headers or {})
            await session.commit()
        return {id(envelope) for envelope in fresh}

    async def _run(
        self,
        session: AsyncSession,
        envelopes: Sequence[events.Envelope[Any]],
        headers: Mapping[int, Mapping[str, Any]],
    ) -> None:
        """In delivery order; a batch handler takes all its events at the first one's place."""
        batched: set[str] = set()
        for envelope in envelopes:
            batch_handler = self.batch_handlers.get(envelope.type)
            if batch_handler is None:
                observability.set_request_id(envelope.correlation_id)
                with self._span(envelope, headers.get(id(envelope))):
                    await self.handlers[envelope.type](session, envelope)
            elif envelope.type not in batched:
                batched.add(envelope.type)
                observability.set_request_id(None)
                together = [e for e in envelopes if e.type == envelope.type]
                carriers = [headers.get(id(e)) for e in together]
                name = f"{envelope.type} process"
                with tracing.consuming_many(carriers, name=name, consumer=self.name):
                    await batch_handler(session, together)

    def _span(
        self, envelope: events.Envelope[Any], headers: Mapping[str, Any] | None
    ) -> AbstractContextManager[None]:
        """The handler's span, in the trace of the change that published the event."""
        return tracing.consuming(
            headers, event_type=envelope.type, message_id=str(envelope.id), consumer=self.name
        )

    async def _process_one(self, delivery: Delivery, envelope: events.Envelope[Any]) -> None:
        """The single-message path: own transaction, then an ack, a retry or a dead letter."""
        observability.set_request_id(envelope.correlation_id)
        try:
            with self._span(envelope, delivery.message.headers):
                outcome = await self._handle(self.handlers[envelope.type], envelope)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._retry_or_dead_letter(delivery, envelope, exc)
            return
        await self._deliveries.ack([delivery])
        MESSAGES.labels(self.name, envelope.type, outcome).inc()

    async def _handle(self, handler: Handler, envelope: events.Envelope[Any]) -> str:
        async with self.session_factory() as session:
            if not await record_in_inbox(session, self.name, envelope.id):
                await session.rollback()
                return "duplicate"
            await handler(session, envelope)
            await session.commit()
        return "handled"

    async def _undecodable(self, delivery: Delivery, exc: Exception) -> None:
        logger.error("undecodable event dead-lettered", extra={"consumer": self.name})
        await self._dead_letter(delivery, f"undecodable: {exc}")
        MESSAGES.labels(self.name, delivery.message.type or "?", "undecodable").inc()

    async def _retry_or_dead_letter(
        self, delivery: Delivery, envelope: events.Envelope[Any], exc: Exception
    ) -> None:
        attempt = attempt_of(delivery.message)
        error = f"{type(exc).__name__}: {exc}"[:1000]
        if attempt < self.max_attempts:
            logger.warning(
                "handler failed; retrying",
                extra={"consumer": self.name, "event_id": str(envelope.id), "attempt": attempt},
                exc_info=exc,
            )
            if await self._send(delivery, self.queues.retries[attempt - 1], attempt + 1, error):
                MESSAGES.labels(self.name, envelope.type, "retried").inc()
        else:
            logger.error(
                "handler failed for the last time; dead-lettered",
                extra={"consumer": self.name, "event_id": str(envelope.id), "attempt": attempt},
                exc_info=exc,
            )
            if await self._dead_letter(delivery, error):
                MESSAGES.labels(self.name, envelope.type, "dead").inc()

    async def _dead_letter(self, delivery: Delivery, error: str) -> bool:
        attempt = attempt_of(delivery.message)
        return await self._send(delivery, self.queues.dead, attempt, error)

    async def _send(self, delivery: Delivery, queue: str, attempt: int, error: str) -> bool:
        """Copy the message into ``queue`` (confirmed), then ack the original. A copy the broker
        refuses leaves the original unacked (delivered again once its channel closes) and never
        stops the rest of the batch from being settled."""
        assert self._channel is not None
        message = delivery.message
        headers = {**message.headers, ATTEMPT_HEADER: attempt, ERROR_HEADER: error}
        body, mid, cid = message.body, message.message_id or "", message.correlation_id
        try:
            await self._channel.default_exchange.publish(
                make_message(body, message.type or "", mid, cid, headers), routing_key=queue
            )
        except Exception:
            logger.exception("%s refused the copy; the message stays unacked", queue)
            return False
        await self._deliveries.ack([delivery])
        return True


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
