"""Running a non-HTTP process (a worker) until it is told to stop.

Workers and one-off commands run on uvloop, as uvicorn runs the APIs: the event loop's own
overhead (callbacks, sockets, timers) is a visible share of a busy worker's time. uvloop comes
with ``uvicorn[standard]``; where it is not installed (it is not built for every platform) the
standard loop is used.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from shared import observability, production, tracing
from shared.auth import AuthSettings
from shared.resources import Resources, open_resources
from shared.settings import ServiceSettings

logger = logging.getLogger(__name__)

T = TypeVar("T")
WorkerMain = Callable[[Resources], Coroutine[Any, Any, None]]
SHUTDOWN_SECONDS = 10.0


async def serve_worker(
    settings: ServiceSettings, *, service: str, schema: str, main: WorkerMain
) -> None:
    """Open resources, run ``main`` and stop cleanly on SIGTERM/SIGINT."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with open_resources(settings, service=service, schema=schema) as resources:
        logger.info("worker started")
        work = asyncio.create_task(main(resources))
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({work, stopper}, return_when=asyncio.FIRST_COMPLETED)
        for task in (work, stopper):
            task.cancel()
        if work in done and not work.cancelled() and work.exception() is not None:
            raise work.exception()  # type: ignore[misc]
        # Let the work's own cleanup (stopping its consumer, say) finish while the broker and
        # the database are still open; bounded, so a stuck cleanup cannot hold the process.
        with contextlib.suppress(asyncio.CancelledError, TimeoutError, Exception):
            async with asyncio.timeout(SHUTDOWN_SECONDS):
                await work
        logger.info("worker stopped")


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on uvloop (or on the standard loop where uvloop is not installed)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] installs it on Linux and macOS
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def run_worker(settings: ServiceSettings, *, service: str, schema: str, main: WorkerMain) -> None:
    production.check(settings, AuthSettings())
    observability.configure_logging(service, level=settings.log_level, json=settings.log_json)
    tracing.configure(service)
    try:
        run(serve_worker(settings, service=service, schema=schema, main=main))
    finally:
        tracing.flush()
