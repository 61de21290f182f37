"""``cinema etl run`` as a real process: killed mid-run it resumes from its watermark; in a loop
it follows the source and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests import support
from tests.etl.conftest import DEMO_MOVIES, World

CINEMA = str(Path(sys.executable).with_name("cinema"))


def start(
    world: World, broker_prefix: str, log: Path, *args: str, **settings: Any
) -> subprocess.Popen[bytes]:
    env = support.suite_environment(world.database_url, broker_prefix)
    env |= {
        "ETL_SOURCE_URL": world.source_url,
        "ETL_BILLING_URL": world.billing.url,
        "ETL_SETTLE_SECONDS": "0",
        "ETL_LOG_JSON": "true",
    }
    env |= {f"ETL_{name.upper()}": str(value) for name, value in settings.items()}
    with open(log, "ab") as out:
        return subprocess.Popen([CINEMA, "etl", "run", *args], env=env, stdout=out, stderr=out)


def batch_lines(log: Path) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return [line for line in lines if "rows_read" in line and "pass_total" in line]


async def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
        await asyncio.to_thread(process.wait, 10)


class TestCrash:
    async def test_a_killed_run_resumes_from_its_watermark_and_every_movie_is_there_once(
        self, world: World, broker_prefix: str, tmp_path: Path
    ) -> None:
        films, batch = 6_000, 100
        total = films + DEMO_MOVIES
        await world.add_films(films)
        async with world.billing.up():
            first = start(world, broker_prefix, tmp_path / "first.log", "--once", batch_size=batch)
            try:

                async def some_batches_loaded() -> bool:
                    loaded = await world.scalar("SELECT rows_loaded FROM etl.sync_state")
                    return bool(loaded and loaded >= 1_000)

                await support.eventually(some_batches_loaded, timeout=60, interval=0.02)
                first.send_signal(signal.SIGKILL)
                await asyncio.to_thread(first.wait, 10)
            finally:
                await stop(first)
            saved = await world.scalar("SELECT rows_loaded FROM etl.sync_state")
            in_billing = await world.scalar("SELECT count(*) FROM billing.movie")
            assert saved < total, "the first run finished before it could be killed"
            # at most the batch in flight was loaded without its watermark being saved
            assert saved <= in_billing <= saved + batch

            second = start(
                world, broker_prefix, tmp_path / "second.log", "--once", batch_size=batch
            )
            try:
                code = await asyncio.to_thread(second.wait, 120)
            finally:
                await stop(second)
        assert code == 0, (tmp_path / "second.log").read_text()[-2000:]
        reread = sum(line["rows_read"] for line in batch_lines(tmp_path / "second.log"))
        assert reread == total - saved  # resumed after the watermark, not from the start
        assert await world.scalar("SELECT rows_loaded FROM etl.sync_state") == total
        titles = await world.billing_titles()
        assert len(titles) == total
        assert titles == {
            movie_id: (title, True) for movie_id, title in (await world.source_titles()).items()
        }


class TestLoop:
    async def test_the_loop_follows_new_source_movies_and_stops_on_sigterm(
        self, world: World, broker_prefix: str, tmp_path: Path
    ) -> None:
        log = tmp_path / "etl.log"
        async with world.billing.up():
            process = start(world, broker_prefix, log, interval_seconds=0.2)
            try:

                async def count_is(expected: int) -> bool:
                    return bool(
                        await world.scalar("SELECT count(*) FROM billing.movie") == expected
                    )

                await support.eventually(lambda: count_is(DEMO_MOVIES), timeout=30)
                await world.add_films(5, title="Later film")
                await support.eventually(lambda: count_is(DEMO_MOVIES + 5), timeout=30)
                process.send_signal(signal.SIGTERM)
                code = await asyncio.to_thread(process.wait, 20)
            finally:
                await stop(process)
        assert code == 0
        assert "worker stopped" in log.read_text()
