"""Workers and one-off commands run on the same event loop as the APIs (uvloop)."""

from __future__ import annotations

import asyncio

import uvloop

from shared import runtime


async def running_loop_type() -> type[asyncio.AbstractEventLoop]:
    return type(asyncio.get_running_loop())


class TestRun:
    def test_a_worker_runs_on_uvloop(self) -> None:
        assert runtime.run(running_loop_type()) is uvloop.Loop

    def test_it_returns_what_the_coroutine_returns_on_a_fresh_loop_each_time(self) -> None:
        async def answer() -> int:
            await asyncio.sleep(0)
            return 42

        assert runtime.run(answer()) == 42
        assert runtime.run(answer()) == 42
