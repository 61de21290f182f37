"""Numbers an operator alerts on that are states, not events: read when Prometheus scrapes.

A counter can only count what its own process did; the outbox backlog, the dead letters waiting
and billing's renewal outcomes are facts about the database or the broker that every replica
sees alike. So each HTTP service's ``/metrics`` reads them just before answering (at most every
:data:`MIN_INTERVAL` seconds, each probe bounded by :data:`PROBE_TIMEOUT`): the workers, which
serve no ``/metrics``, are covered by the API of the same service, and N replicas report the
same value (alert on ``max``, not ``sum``). A probe that fails leaves its last value and is
logged; the scrape itself never fails because of it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

import sqlalchemy as sa
from prometheus_client import Gauge

from shared.resources import Resources

logger = logging.getLogger(__name__)

Probe = Callable[[Resources], Awaitable[None]]

MIN_INTERVAL = 10.0
PROBE_TIMEOUT = 2.0

OUTBOX_UNPUBLISHED = Gauge(
    "outbox_unpublished_events", "Events in the service's outbox not yet published.", ["schema"]
)
OUTBOX_OLDEST_AGE = Gauge(
    "outbox_oldest_unpublished_age_seconds",
    "Age of the oldest event not yet published (0 when none waits): the outbox lag.",
    ["schema"],
)
DEAD_LETTERS = Gauge(
    "consumer_dead_letters",
    "Messages waiting in a consumer's dead-letter queue (cinema dlq lists and replays them).",
    ["consumer"],
)

# Served by the partial index ``ix_outbox_unpublished``.
_OUTBOX_BACKLOG = sa.text(
    "SELECT count(*) AS waiting,"
    " coalesce(extract(epoch FROM clock_timestamp() - min(created_at)), 0) AS oldest"
    " FROM outbox WHERE published_at IS NULL"
)


async def outbox_backlog(resources: Resources) -> None:
    async with resources.engine.connect() as conn:
        row = (await conn.execute(_OUTBOX_BACKLOG)).one()
    OUTBOX_UNPUBLISHED.labels(resources.schema).set(row.waiting)
    OUTBOX_OLDEST_AGE.labels(resources.schema).set(max(float(row.oldest), 0.0))


def dead_letters(consumer: str) -> Probe:
    """A probe of ``<consumer>.dead`` (nothing is set while the queue was never declared)."""

    async def probe(resources: Resources) -> None:
        broker = resources.broker
        if not broker.is_connected:
            return
        channel = await broker.channel()
        try:
            queue = await channel.declare_queue(broker.name(f"{consumer}.dead"), passive=True)
            count = queue.declaration_result.message_count
        finally:
            if not channel.is_closed:
                await channel.close()
        DEAD_LETTERS.labels(consumer).set(count or 0)

    return probe


class Probes:
    """The probes of one app, run before a scrape answers."""

    def __init__(self, probes: Sequence[Probe], *, min_interval: float = MIN_INTERVAL) -> None:
        self.probes = list(probes)
        self.min_interval = min_interval
        self._last = -min_interval
        self._lock = asyncio.Lock()

    async def refresh(self, resources: Resources) -> None:
        async with self._lock:  # concurrent scrapes wait for one round instead of each running
            if time.monotonic() - self._last < self.min_interval:
                return
            await asyncio.gather(*(self._run(probe, resources) for probe in self.probes))
            self._last = time.monotonic()

    async def _run(self, probe: Probe, resources: Resources) -> None:
        try:
            async with asyncio.timeout(PROBE_TIMEOUT):
                await probe(resources)
        except Exception as exc:
            logger.warning(
                "metrics probe %s failed: %s", getattr(probe, "__qualname__", probe), exc
            )
