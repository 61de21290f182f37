"""The loop that processes stored webhooks in every gateway process.

Woken in-process by the request that stored an event (an :class:`asyncio.Event`), it processes
batches until one comes back short; otherwise it looks every :attr:`interval` seconds, which is
how it finds the events another replica stored (or one that died before processing) and the
ones whose processing failed. A failed event waits out a backoff kept in its own row (1 s, 2 s,
4 s … at most ``max_backoff``, counted from the failure) and is parked after ``max_attempts``
failures (:mod:`.parking`), so an event that keeps failing neither spins the loop nor holds a
batch's place, in this process or after a restart: later events are claimed around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from payment_gateway.providers.registry import Providers
from payment_gateway.webhooks.parking import RetryPolicy
from payment_gateway.webhooks.processing import BATCH_SIZE, process_batch

logger = logging.getLogger(__name__)

WEBHOOK_EVENTS = Counter(
    "gateway_webhook_events_total",
    "Stored provider webhooks processed, by outcome (processed; failed: processing raised and"
    " the event is left for a retry with backoff).",
    ["outcome"],
)
for _outcome in ("processed", "failed"):  # both series exist from the start, for rate()
    WEBHOOK_EVENTS.labels(_outcome)

MAX_BACKOFF = RetryPolicy.max_backoff
MAX_ATTEMPTS = RetryPolicy.max_attempts


class WebhookProcessor:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        providers: Providers,
        *,
        batch_size: int = BATCH_SIZE,
        interval: float = 1.0,
        max_backoff: float = MAX_BACKOFF,
        max_attempts: int = MAX_ATTEMPTS,
    ) -> None:
        self.sessions = sessions
        self.providers = providers
        self.batch_size = batch_size
        self.interval = interval
        self.policy = RetryPolicy(max_attempts=max_attempts, max_backoff=max_backoff)
        self._woken = asyncio.Event()

    def wake(self) -> None:
        """An event was stored and committed: process it now rather than at the next look."""
        self._woken.set()

    async def process_pending(self) -> int:
        """Process every stored event that is due, batch after batch; returns how many."""
        done = 0
        while True:
            result = await process_batch(
                self.sessions, self.providers, limit=self.batch_size, policy=self.policy
            )
            done += result.processed
            WEBHOOK_EVENTS.labels("processed").inc(result.processed)
            WEBHOOK_EVENTS.labels("failed").inc(len(result.failed))
            if result.claimed < self.batch_size:
                return done

    async def run(self) -> None:
        """Process forever, woken at once when a webhook is stored."""
        while True:
            self._woken.clear()
            try:
                await self.process_pending()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("webhook processing failed")
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
            # arrives as the wait ends, and the loop would then never stop.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._woken.wait()
