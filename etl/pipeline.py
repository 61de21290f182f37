"""One pass of the copy, and the loops that repeat it through outages.

A pass reads ``content.film_work`` by keyset on ``(modified, id)`` from the saved watermark, loads
each batch through billing's bulk upsert and only then saves the batch's last row as the new
watermark. A crash or outage therefore repeats at most the batch in flight, which the idempotent
upsert absorbs. The full pass then walks billing's movies held as in the source and marks those
the source no longer has (``in_source: false``), which takes them off sale; whether staff sell a
movie (``available``) is never touched here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from etl import transform
from etl.billing import BillingClient, BillingMovie, Loaded
from etl.config import EtlSettings
from etl.errors import Unavailable
from etl.source import Source, Watermark
from etl.state import StateStore
from shared import clock

logger = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
FULL_PASS_PAGE = 1000


class Backoff:
    """Exponential waits between failed attempts; any progress starts again from the shortest."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial = initial
        self.maximum = maximum
        self._next = initial

    def failed(self) -> float:
        delay = self._next
        self._next = min(delay * 2, self.maximum)
        return delay

    def progressed(self) -> None:
        self._next = self.initial


@dataclass
class PassReport:
    read: int = 0
    loaded: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    batches: int = 0
    marked_gone: int = 0
    seconds: float = 0.0

    @property
    def movies_per_second(self) -> float:
        return self.loaded / self.seconds if self.seconds > 0 else 0.0


def _lag_seconds(newest: datetime | None, watermark: Watermark | None) -> float:
    if newest is None or watermark is None:
        return 0.0
    return max(0.0, (newest - watermark.modified).total_seconds())


async def sync_changes(
    source: Source,
    billing: BillingClient,
    store: StateStore,
    *,
    batch_size: int,
    report: PassReport,
    backoff: Backoff | None = None,
) -> None:
    """Load every source row changed since the watermark, one batch at a time.

    The next batch is read from the source while billing loads the current one (reading
    changes nothing), but batches are loaded one after the other and the watermark is saved
    after each, so a crash still repeats at most the batch in flight.
    """
    state = await store.load()
    watermark = state.watermark
    newest = await source.newest_modified()
    films = await source.changed_after(watermark, limit=batch_size)
    while films:
        ahead = None
        if len(films) == batch_size:
            ahead = asyncio.create_task(source.changed_after(films[-1].watermark, limit=batch_size))
        try:
            loaded = await billing.upsert([transform.movie(film) for film in films])
            watermark = films[-1].watermark
            await store.save_watermark(watermark, loaded=loaded.received)
        except BaseException:
            if ahead is not None:
                ahead.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await ahead
            raise
        if backoff is not None:
            backoff.progressed()
        _count(report, len(films), loaded, newest, watermark)
        films = await ahead if ahead is not None else []


def _count(
    report: PassReport, read: int, loaded: Loaded, newest: datetime | None, watermark: Watermark
) -> None:
    report.batches += 1
    report.read += read
    report.loaded += loaded.received
    report.created += loaded.created
    report.updated += loaded.updated
    report.unchanged += loaded.unchanged
    lag = _lag_seconds(newest, watermark)
    logger.info(
        "film_work batch: read %d, loaded %d (created %d, updated %d, unchanged %d);"
        " pass total %d; watermark lag %.1fs",
        read,
        loaded.received,
        loaded.created,
        loaded.updated,
        loaded.unchanged,
        report.loaded,
        lag,
        extra={
            "table": "film_work",
            "rows_read": read,
            "rows_loaded": loaded.received,
            "pass_total": report.loaded,
            "watermark_modified": watermark.modified.isoformat(),
            "watermark_id": str(watermark.id),
            "lag_seconds": round(lag, 3),
        },
    )


async def mark_vanished(
    source: Source, billing: BillingClient, *, report: PassReport, page_size: int = FULL_PASS_PAGE
) -> None:
    """Mark every movie billing holds as in the source that the source no longer has.

    Billing's next page is fetched while the source is asked about the current one: pages are
    keyset by id, so marking movies of one page changes nothing on the next.
    """
    pages = billing.movies_in_source(page_size=page_size)
    try:
        page = await anext(pages, None)
        while page is not None:
            following = asyncio.ensure_future(anext(pages, None))
            try:
                await _mark_gone(source, billing, page, report)
            except BaseException:
                following.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await following
                raise
            page = await following
    finally:
        await pages.aclose()


async def _mark_gone(
    source: Source, billing: BillingClient, page: list[BillingMovie], report: PassReport
) -> None:
    present = await source.existing_ids([movie.id for movie in page])
    gone = [movie for movie in page if movie.id not in present]
    if gone:
        await billing.upsert(
            [{"id": str(movie.id), "title": movie.title, "in_source": False} for movie in gone]
        )
        report.marked_gone += len(gone)
        logger.info(
            "full pass: %d movies gone from the source marked so (off sale)",
            len(gone),
            extra={"table": "film_work", "marked_gone": len(gone)},
        )


class Etl:
    """The copy with its retry policy: ``run_once`` for one complete sync, ``run_forever`` to
    keep billing in step."""

    def __init__(
        self,
        settings: EtlSettings,
        source: Source,
        billing: BillingClient,
        store: StateStore,
        *,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self.source = source
        self.billing = billing
        self.store = store
        self.sleep = sleep
        self.backoff = Backoff(settings.backoff_initial_seconds, settings.backoff_max_seconds)

    async def run_pass(self, *, full: bool, report: PassReport | None = None) -> PassReport:
        """Catch up with the source, then (when ``full``) mark vanished movies; raises
        :class:`Unavailable` when a side cannot be reached (progress so far is kept, and counted
        in ``report`` when one is given)."""
        report = report or PassReport()
        started = time.perf_counter()
        full_pass_at = clock.now()
        try:
            await sync_changes(
                self.source,
                self.billing,
                self.store,
                batch_size=self.settings.batch_size,
                report=report,
                backoff=self.backoff,
            )
            if full:
                await mark_vanished(self.source, self.billing, report=report)
                await self.store.save_full_pass(full_pass_at)
        finally:
            report.seconds += time.perf_counter() - started
        self.backoff.progressed()
        logger.info(
            "pass done: read %d, loaded %d in %d batches, %.1fs (%.0f movies/s)%s",
            report.read,
            report.loaded,
            report.batches,
            report.seconds,
            report.movies_per_second,
            f"; full pass marked {report.marked_gone} gone from the source" if full else "",
            extra={
                "table": "film_work",
                "rows_read": report.read,
                "rows_loaded": report.loaded,
                "movies_per_second": round(report.movies_per_second, 1),
                "full_pass": full,
            },
        )
        return report

    async def _full_pass_due(self) -> bool:
        last = (await self.store.load()).full_pass_at
        interval = self.settings.full_pass_interval_seconds
        return last is None or (clock.now() - last).total_seconds() >= interval

    async def _wait_after(self, exc: Unavailable) -> None:
        delay = self.backoff.failed()
        logger.warning(
            "%s %s, retrying in %.2gs: %s",
            exc.side,
            exc.problem,
            delay,
            exc,
            extra={"side": exc.side, "retry_in_seconds": delay},
        )
        await self.sleep(delay)

    async def run_once(self) -> PassReport:
        """One complete sync (changes and the full pass), retried through outages until done."""
        report = PassReport()
        while True:
            try:
                return await self.run_pass(full=True, report=report)
            except Unavailable as exc:
                await self._wait_after(exc)

    async def run_forever(self) -> None:
        while True:
            try:
                await self.run_pass(full=await self._full_pass_due())
            except Unavailable as exc:
                await self._wait_after(exc)
                continue
            except Exception:
                # A bug must not stop the copy for good; it is logged and tried again later.
                logger.exception("pass failed")
                await self.sleep(self.backoff.failed())
                continue
            await self.sleep(self.settings.interval_seconds)
