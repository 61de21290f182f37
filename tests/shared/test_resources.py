"""shared.resources.stop_tasks: a service always shuts down, whatever its background tasks do."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest

from shared.resources import stop_tasks


async def _misses_one_cancellation(stopped: asyncio.Event) -> None:
    """A loop that lost its first cancellation, as asyncio.wait_for can make one on 3.11."""
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(60)
    try:
        await asyncio.sleep(60)
    finally:
        stopped.set()


async def _ignores_cancellation(until: asyncio.Event) -> None:
    while not until.is_set():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0.05)


async def _fails() -> None:
    raise RuntimeError("the loop broke")


class TestStopTasks:
    async def test_a_task_that_missed_its_cancellation_is_cancelled_again(self) -> None:
        stopped = asyncio.Event()
        task = asyncio.create_task(_misses_one_cancellation(stopped))
        await asyncio.sleep(0)

        await asyncio.wait_for(stop_tasks([task]), 5)

        assert stopped.is_set()
        assert task.cancelled()

    async def test_a_task_that_never_stops_is_left_behind_and_named(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        until = asyncio.Event()
        task = asyncio.create_task(_ignores_cancellation(until), name="stubborn-loop")
        await asyncio.sleep(0)

        with caplog.at_level(logging.ERROR, logger="shared.resources"):
            await asyncio.wait_for(stop_tasks([task], grace=1.0), 5)

        assert not task.done()
        assert "stubborn-loop did not stop" in caplog.text
        until.set()  # the test's own clean-up
        await task

    async def test_a_task_that_failed_is_logged_not_raised(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        task = asyncio.create_task(_fails(), name="broken-loop")
        await asyncio.sleep(0)

        with caplog.at_level(logging.ERROR, logger="shared.resources"):
            await stop_tasks([task])

        assert "broken-loop failed" in caplog.text
