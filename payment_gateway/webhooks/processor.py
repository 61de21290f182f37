"""The loop that processes stored webhooks in every gateway process.

Woken in-process by the request that stored an event (an :class:`asyncio.Event`), it processes
batches until one comes back short; otherwise it looks every :attr:`interval` seconds, which is
how it finds the events another replica stored (or one that died before processing) and the
ones whose processing failed. A failed event is retried after a backoff kept in this process
(1 s, 2 s, 4 s … at most a minute, counted from the failure), so an event that keeps failing
neither spins the loop nor holds a batch's place: later events are claimed around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from payment_gateway.providers.registry import Providers
from payment_gateway.webhooks.processing import BATCH_SIZE, process_batch

logger = logging.getLogger(__name__)

MAX_BACKOFF = 60.0


class WebhookProcessor:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        providers: Providers,
        *,
        batch_size: int = BATCH_SIZE,
        interval: float = 1.0,
        max_backoff: float = MAX_BACKOFF,
    ) -> None:
        self.sessions = sessions
        self.providers = providers
        self.batch_size = batch_size
        self.interval = interval
        self.max_backoff = max_backoff
        self._woken = asyncio.Event()
        self._failures: dict[int, int] = {}  # event id → failed attempts in this process
        self._retry_at: dict[int, float] = {}  # event id → loop time it may be tried again

    def wake(self) -> None:
        """An event was stored and committed: process it now rather than at the next look."""
        self._woken.set()

    async def process_pending(self) -> int:
        """Process every stored event that is due, batch after batch; returns how many."""
        done = 0
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            waiting = {row for row, at in self._retry_at.items() if at > now}
            result = await process_batch(
                self.sessions, self.providers, limit=self.batch_size, skip=waiting
            )
            done += result.processed
            # Counted from when it failed, not from when the batch began: a batch of events that
            # each fail slowly (a provider timing out) would otherwise be due again before it
            # ends, be claimed again at once, and hold back every event stored after them.
            failed_at = loop.time()
            for row in result.failed:
                attempts = self._failures.get(row, 0) + 1
                self._failures[row] = attempts
                self._retry_at[row] = failed_at + min(2.0 ** (attempts - 1), self.max_backoff)
            # Due long ago and not failed since: processed here or by another replica.
            for row in [
                row for row, at in self._retry_at.items() if at < now - 2 * self.max_backoff
            ]:
                self._retry_at.pop(row)
                self._failures.pop(row, None)
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
