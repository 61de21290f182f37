"""The ``etl`` process: open the source, billing's client and the state store; run; stop cleanly.

The ETL needs no broker, so it has its own small runner instead of :mod:`shared.runtime`'s
worker; it runs on the same event loop (:func:`shared.runtime.run`, uvloop).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator

from etl.billing import BillingClient
from etl.config import SCHEMA, SERVICE, EtlSettings
from etl.pipeline import Etl, PassReport
from etl.source import Source
from etl.state import StateStore
from shared import observability, production, runtime, tracing
from shared.auth import AuthSettings
from shared.resources import make_database

logger = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def open_etl(settings: EtlSettings, auth: AuthSettings | None = None) -> AsyncIterator[Etl]:
    engine, _ = make_database(settings, service=SERVICE, schema=SCHEMA)
    source = Source.connect(settings.source_url, settle_seconds=settings.settle_seconds)
    try:
        async with observability.create_http_client(timeout=settings.http_timeout_seconds) as http:
            billing = BillingClient(http, settings.billing_url, auth or AuthSettings())
            yield Etl(settings, source, billing, StateStore(engine))
    finally:
        await source.close()
        await engine.dispose()


async def serve(settings: EtlSettings, *, once: bool) -> PassReport | None:
    """Run until done (``once``) or until SIGTERM/SIGINT."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with open_etl(settings) as etl:
        logger.info("worker started", extra={"once": once, "batch_size": settings.batch_size})
        work = asyncio.create_task(etl.run_once() if once else etl.run_forever())
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({work, stopper}, return_when=asyncio.FIRST_COMPLETED)
        for task in (work, stopper):
            task.cancel()
        report = None
        if work in done and not work.cancelled():
            report = work.result()
        logger.info("worker stopped")
        return report


def main(*, once: bool) -> int:
    settings = EtlSettings()
    production.check(settings, AuthSettings())
    observability.configure_logging(SERVICE, level=settings.log_level, json=settings.log_json)
    tracing.configure(SERVICE)
    try:
        report = runtime.run(serve(settings, once=once))
    finally:
        tracing.flush()
    return 0 if report is not None or not once else 1
