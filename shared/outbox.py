"""The transactional outbox: events leave a service only if its transaction committed.

``await outbox.add(session, SubscriptionActivated(...))`` inserts the event in the caller's
transaction, already serialised: the row keeps the exact bytes the relay will publish
(:func:`shared.events.encode`), so an event is turned into JSON once in its life. A transaction
that settles many changes wraps them in :func:`collected`: their events are inserted by one
statement at the end of the block, in the order they were added.

:class:`OutboxRelay` publishes unpublished rows with publisher confirms. One statement claims a
batch (``FOR UPDATE SKIP LOCKED``) and stamps it published inside the relay's transaction, which
commits only after the broker confirmed: several relays share the work without publishing a row
twice while they are healthy, and a relay that dies after publishing but before committing leaves
its rows unpublished, they are published again (at-least-once) and the consumers' inbox makes the
second copy a no-op.

A relay wakes when rows may be waiting: when a session of its own process that added rows commits
(in-process, see :mod:`shared.outbox_wake`), on ``NOTIFY`` from a commit in another process, and
every ``poll_interval`` as the fallback for anything both missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from prometheus_client import Counter
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

from shared import clock, events, observability, outbox_wake, tracing
from shared.broker import EVENTS_EXCHANGE, Broker
from shared.tables import notify_channel

logger = logging.getLogger(__name__)

EVENTS_PUBLISHED = Counter("outbox_events_published_total", "Events published by the relay.")


def producer_of(session: AsyncSession) -> str:
    producer = session.info.get("service")
    if not producer:
        raise RuntimeError("the session factory was not created with service=...")
    return str(producer)


# One statement for any number of events, so a state change that returns several costs one
# round trip (and one NOTIFY). Rows are numbered (``seq``) in the order the events were given.
_INSERT = sa.text(
    "INSERT INTO outbox (id, event_type, payload, correlation_id, trace_context)"
    " SELECT id, event_type, payload, correlation_id, trace_context FROM unnest("
    "CAST(:ids AS uuid[]), CAST(:event_types AS varchar[]), CAST(:payloads AS bytea[]),"
    " CAST(:correlation_ids AS varchar[]), CAST(:trace_contexts AS text[])"
    ") WITH ORDINALITY AS row (id, event_type, payload, correlation_id, trace_context, n)"
    " ORDER BY n"
)


# ``session.info`` key: the envelopes a :func:`collected` block will insert at its end, each
# with the trace context it was added in (:func:`shared.tracing.current_carrier`).
_COLLECTED = "outbox.collected"
_Pending = tuple[events.Envelope[Any], str | None]


@contextlib.asynccontextmanager
async def collected(session: AsyncSession) -> AsyncIterator[None]:
    """Insert the events added inside the block by one statement when it ends, in the order
    they were added (before anything added after the block: same transaction, same order).

    For a transaction that settles many changes at once (a group of renewals): one round trip
    instead of one per change. A block that fails writes nothing, so its transaction must be
    rolled back, as the changes of a failed block are; a savepoint may not begin inside it (its
    rollback could not take back the events already collected).
    """
    if _COLLECTED in session.info:  # already inside a block: that one inserts them
        yield
        return
    pending: list[_Pending] = []
    session.info[_COLLECTED] = pending
    try:
        yield
    finally:
        del session.info[_COLLECTED]
    await _write(session, pending)


@event.listens_for(Session, "after_transaction_create")
def _no_savepoint_while_collecting(session: Session, transaction: SessionTransaction) -> None:
    if transaction.nested and _COLLECTED in session.info:
        raise RuntimeError("a savepoint inside outbox.collected() could not take its events back")


async def add(
    session: AsyncSession, payload: events.EventPayload, *, correlation_id: str | None = None
) -> events.Envelope[Any]:
    """Record ``payload`` for publishing when (and only if) the session's transaction commits."""
    (envelope,) = await _insert(session, [payload], correlation_id)
    return envelope


async def add_all(
    session: AsyncSession, payloads: Sequence[events.EventPayload]
) -> list[events.Envelope[Any]]:
    """:func:`add` each of ``payloads`` in order (the events one state change returns)."""
    if not payloads:
        return []
    return await _insert(session, payloads, None)


async def _insert(
    session: AsyncSession, payloads: Sequence[events.EventPayload], correlation_id: str | None
) -> list[events.Envelope[Any]]:
    producer = producer_of(session)
    correlation_id = correlation_id or observability.current_request_id()
    envelopes = [
        events.wrap(payload, producer=producer, correlation_id=correlation_id)
        for payload in payloads
    ]
    trace_context = tracing.current_carrier()
    rows = [(envelope, trace_context) for envelope in envelopes]
    pending: list[_Pending] | None = session.info.get(_COLLECTED)
    if pending is not None:
        pending.extend(rows)
        return envelopes
    await _write(session, rows)
    return envelopes


async def _write(session: AsyncSession, rows: Sequence[_Pending]) -> None:
    if not rows:
        return
    await session.execute(
        _INSERT,
        {
            "ids": [envelope.id for envelope, _ in rows],
            "event_types": [envelope.type for envelope, _ in rows],
            "payloads": [events.encode(envelope) for envelope, _ in rows],
            "correlation_ids": [envelope.correlation_id for envelope, _ in rows],
            "trace_contexts": [trace_context for _, trace_context in rows],
        },
    )
    outbox_wake.wake_on_commit(session)


AfterPublish = Callable[[Sequence[UUID]], Awaitable[None]]

# Claim and stamp in one statement. The stamp is part of the relay's transaction, which commits
# only after the broker confirmed: until then other relays skip the locked rows, and a failed or
# interrupted publish rolls the stamp back with everything else. (A CTE holding ``FOR UPDATE`` is
# never inlined, so the ``LIMIT`` applies once.) ``RETURNING`` promises no order: sorted by seq.
_CLAIM = sa.text(
    "WITH claimed AS ("
    "SELECT id FROM outbox WHERE published_at IS NULL ORDER BY seq LIMIT :limit"
    " FOR UPDATE SKIP LOCKED"
    ") UPDATE outbox SET published_at = :now FROM claimed WHERE outbox.id = claimed.id"
    " RETURNING outbox.seq, outbox.id, outbox.event_type, outbox.payload, outbox.correlation_id,"
    " outbox.trace_context"
)


class OutboxRelay:
    """Publishes a service's outbox; run one or many per service.

    ``listen=False`` leaves out ``LISTEN`` (behind a connection pooler that cannot keep one, say):
    the relay is then woken by commits in its own process and by polling alone.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        broker: Broker,
        *,
        schema: str,
        batch_size: int = 200,
        poll_interval: float = 1.0,
        listen: bool = True,
        after_publish: AfterPublish | None = None,
    ) -> None:
        self.engine = engine
        self.broker = broker
        self.schema = schema
        self.channel = notify_channel(schema)
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.listen = listen
        # A seam for fault tests: runs after the broker confirmed, before the stamp commits.
        self.after_publish = after_publish
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def publish_batch(self) -> int:
        """Publish one batch of unpublished rows; returns how many were published."""
        async with self.engine.connect() as conn, conn.begin():
            claimed = await conn.execute(_CLAIM, {"limit": self.batch_size, "now": clock.now()})
            rows = sorted(claimed.all(), key=lambda row: row.seq)
            if not rows:
                return 0
            traced = [(row.event_type, str(row.id), row.trace_context) for row in rows]
            with tracing.publishing(
                traced, destination=self.broker.name(EVENTS_EXCHANGE)
            ) as headers:
                await self.broker.publish_many(
                    [
                        (row.event_type, str(row.id), row.payload, row.correlation_id)
                        for row in rows
                    ],
                    headers=headers,
                )
            if self.after_publish is not None:
                await self.after_publish([row.id for row in rows])
        EVENTS_PUBLISHED.inc(len(rows))
        return len(rows)

    async def drain(self) -> int:
        """Publish until nothing is left; returns the total.

        A batch smaller than ``batch_size`` took all there was to take, so no further (empty)
        claim is spent on finding that out: rows committed after it wake the relay again.
        """
        total = 0
        while True:
            published = await self.publish_batch()
            total += published
            if published < self.batch_size:
                return total

    def wake(self) -> None:
        """Make a running :meth:`run` drain now. Safe from any thread and any event loop: the
        relay's event is only ever set on the loop the relay runs on."""
        loop = self._loop
        if loop is None:
            return
        try:
            on_relay_loop = asyncio.get_running_loop() is loop
        except RuntimeError:  # no loop running in this thread
            on_relay_loop = False
        if on_relay_loop:
            self._wake.set()
            return
        with contextlib.suppress(RuntimeError):  # the relay's loop has just closed
            loop.call_soon_threadsafe(self._wake.set)

    async def run(self) -> None:
        """Publish forever: woken by commits (this process's, or ``NOTIFY``), polling as a
        fallback."""
        self._loop = asyncio.get_running_loop()
        outbox_wake.register(self.schema, self.wake)
        listener = (
            asyncio.create_task(self._listen(), name=f"outbox-listen-{self.channel}")
            if self.listen
            else None
        )
        try:
            while True:
                # Cleared before draining: a commit during the drain wakes the next round.
                self._wake.clear()
                try:
                    await self.drain()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    logger.exception("outbox relay batch failed; will retry")
                    await asyncio.sleep(self.poll_interval)
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
                # arrives as the wait ends, and the loop would then never stop.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.poll_interval):
                        await self._wake.wait()
        finally:
            outbox_wake.unregister(self.schema, self.wake)
            self._loop = None
            if listener is not None:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener

    async def _listen(self) -> None:
        """Keep a ``LISTEN`` open, reconnecting if the connection drops."""

        def wake(*_: Any) -> None:
            self._wake.set()

        while True:
            try:
                async with self.engine.connect() as conn:
                    raw = (await conn.get_raw_connection()).driver_connection
                    assert raw is not None
                    await raw.add_listener(self.channel, wake)
                    try:
                        while not raw.is_closed():
                            await asyncio.sleep(self.poll_interval)
                    finally:
                        if not raw.is_closed():
                            await raw.remove_listener(self.channel, wake)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("outbox LISTEN connection lost; polling until it is back")
                await asyncio.sleep(self.poll_interval)
