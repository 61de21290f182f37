"""The transactional outbox: events leave a service only if its transaction committed.

``await outbox.add(session, SubscriptionActivated(...))`` inserts the event in the caller's
transaction. :class:`OutboxRelay` publishes unpublished rows with publisher confirms and marks them
published afterwards. Rows are claimed with ``FOR UPDATE SKIP LOCKED`` so several relays share the
work without publishing a row twice while they are healthy; a relay that dies after publishing but
before marking leaves its rows unmarked, they are published again (at-least-once) and the
consumers' inbox makes the second copy a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from uuid import UUID

import orjson
import sqlalchemy as sa
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from shared import clock, events, observability
from shared.broker import Broker
from shared.tables import notify_channel, outbox

logger = logging.getLogger(__name__)

EVENTS_PUBLISHED = Counter("outbox_events_published_total", "Events published by the relay.")


def producer_of(session: AsyncSession) -> str:
    producer = session.info.get("service")
    if not producer:
        raise RuntimeError("the session factory was not created with service=...")
    return str(producer)


async def add(
    session: AsyncSession, payload: events.EventPayload, *, correlation_id: str | None = None
) -> events.Envelope[Any]:
    """Record ``payload`` for publishing when (and only if) the session's transaction commits."""
    envelope = events.wrap(
        payload,
        producer=producer_of(session),
        correlation_id=correlation_id or observability.current_request_id(),
    )
    await session.execute(
        outbox.insert().values(
            id=envelope.id,
            event_type=envelope.type,
            body=envelope.model_dump(mode="json"),
            correlation_id=envelope.correlation_id,
        )
    )
    return envelope


async def add_all(session: AsyncSession, payloads: Sequence[events.EventPayload]) -> None:
    """:func:`add` each of ``payloads`` in order (the events one state change returns)."""
    for payload in payloads:
        await add(session, payload)


AfterPublish = Callable[[Sequence[UUID]], Awaitable[None]]

_CLAIM = sa.text(
    "SELECT id, event_type, body, correlation_id FROM outbox"
    " WHERE published_at IS NULL ORDER BY seq LIMIT :limit FOR UPDATE SKIP LOCKED"
)
_MARK = sa.text("UPDATE outbox SET published_at = :now WHERE id = ANY(:ids)")


class OutboxRelay:
    """Publishes a service's outbox; run one or many per service."""

    def __init__(
        self,
        engine: AsyncEngine,
        broker: Broker,
        *,
        schema: str,
        batch_size: int = 200,
        poll_interval: float = 1.0,
        after_publish: AfterPublish | None = None,
    ) -> None:
        self.engine = engine
        self.broker = broker
        self.channel = notify_channel(schema)
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        # A seam for fault tests: runs after the broker confirmed, before rows are marked.
        self.after_publish = after_publish
        self._wake = asyncio.Event()

    async def publish_batch(self) -> int:
        """Publish one batch of unpublished rows; returns how many were published."""
        async with self.engine.connect() as conn, conn.begin():
            rows = (await conn.execute(_CLAIM, {"limit": self.batch_size})).all()
            if not rows:
                return 0
            await self.broker.publish_many(
                [
                    (row.event_type, str(row.id), orjson.dumps(row.body), row.correlation_id)
                    for row in rows
                ]
            )
            ids = [row.id for row in rows]
            if self.after_publish is not None:
                await self.after_publish(ids)
            await conn.execute(_MARK, {"ids": ids, "now": clock.now()})
        EVENTS_PUBLISHED.inc(len(rows))
        return len(rows)

    async def drain(self) -> int:
        """Publish until nothing is left; returns the total."""
        total = 0
        while published := await self.publish_batch():
            total += published
        return total

    async def run(self) -> None:
        """Publish forever: woken by ``NOTIFY`` on commit, polling as a fallback."""
        listener = asyncio.create_task(self._listen(), name=f"outbox-listen-{self.channel}")
        try:
            while True:
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
                self._wake.clear()
        finally:
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
