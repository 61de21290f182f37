"""``make bench-etl``: movies/s of one ETL pass from a fresh watermark.

A scratch movie admin database (``cinema etl seed-source``) gets 20,000 more films; billing-api
runs on a fresh database; ``cinema etl run --once`` (default batch size, ETL_BATCH_SIZE) then
copies everything by keyset through billing's bulk upsert and does its full pass. Measured: the
wall time of that process (start-up included) and the movies that arrived in billing.
Target ≥ 5,000 movies/s.

    python -m bench.etl
"""

from __future__ import annotations

import asyncio
import os
import time

import asyncpg

from bench import common
from bench.suite import Suite
from shared import dbadmin

MOVIES = 20_000
TARGET_PER_S = 5_000.0

FILMS_SQL = """
INSERT INTO content.film_work (id, title, description, type, created, modified)
SELECT md5('film-' || n)::uuid, 'Film ' || n, 'About film ' || n, 'movie',
       now() - interval '1 day', now() - interval '1 day' + n * interval '1 millisecond'
FROM generate_series(1, $1::int) AS n
"""


async def add_films(source_url: str, count: int) -> int:
    conn = await asyncpg.connect(common.asyncpg_dsn(source_url), command_timeout=300)
    try:
        await conn.execute(FILMS_SQL, count)
        await conn.execute("ANALYZE content.film_work")
        total: int = await conn.fetchval("SELECT count(*) FROM content.film_work")
        return total
    finally:
        await conn.close()


async def billing_movies(database_url: str) -> int:
    conn = await asyncpg.connect(common.asyncpg_dsn(database_url))
    try:
        count: int = await conn.fetchval("SELECT count(*) FROM billing.movie")
        return count
    finally:
        await conn.close()


def run() -> int:
    load = os.getloadavg()
    source_url = common.bench_database_url("cinema_bench_etl_source")
    asyncio.run(dbadmin.drop_database(source_url))
    try:
        with Suite(
            "etl", extra_env={"ETL_SOURCE_URL": source_url, "ETL_SETTLE_SECONDS": "0"}
        ) as suite:
            suite.run("etl", "seed-source")
            total = asyncio.run(add_films(source_url, MOVIES))
            suite.start("billing-api")
            before = asyncio.run(billing_movies(suite.database_url))
            print(f"etl run --once over {total:,} source movies …", flush=True)
            with common.CpuMeter(suite.pids) as meter:
                started = time.monotonic()
                suite.run("etl", "run", "--once", timeout_s=600)
                seconds = time.monotonic() - started
            loaded = asyncio.run(billing_movies(suite.database_url)) - before
            suite.check_alive()
            batch = suite.env.get("ETL_BATCH_SIZE", "500")
    finally:
        asyncio.run(dbadmin.drop_database(source_url))
    if loaded < MOVIES:
        raise common.BenchFailed(f"{loaded} of {MOVIES} movies reached billing")
    per_s = total / seconds
    section = {
        "movies": total,
        "per_s": round(per_s, 1),
        "seconds": round(seconds, 2),
        "batch_size": int(batch),
        "load_before": [round(x, 2) for x in load],
    }
    common.print_table(
        ["etl", "movies", "seconds", "per s", "other cpus", "target", ""],
        [
            [
                "run --once",
                total,
                seconds,
                per_s,
                meter.background_cpus,
                f"≥ {TARGET_PER_S:,.0f}/s",
                common.mark(per_s >= TARGET_PER_S),
            ]
        ],
        title=f"etl: fresh watermark, batches of {batch}, start-up included · load {load[0]:.2f}",
    )
    path = common.write_results("etl", section)
    print(f"\nwritten: {path.relative_to(common.ROOT)}")
    return 0


def main() -> None:
    common.run_main("etl", run)


if __name__ == "__main__":
    main()
