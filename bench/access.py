"""``make bench-access``: the access check against a bare endpoint of the same server.

One access-api server (``--workers 2``) on a scratch database seeded with 100,000 users and their
grants over 10,000 movies; wrk (64 connections, 2 threads) then measures, in this order and
against that same server: a warm-up of the single check (not reported), ``bare``
(``/health/live``), ``single`` (one check, random users and movies from a seeded sample) and
``batch100`` (100 movies per request). Targets: single.rps >= 0.6 * bare.rps, single p99 ≤ 10 ms.

    python -m bench.access          # BENCH_SECONDS=10 by default
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench import common
from shared import dbadmin
from shared.auth import AuthSettings, mint_service_token

USERS = 100_000
MOVIES = 10_000
PLANS = 10
ALL_MOVIES_PLANS = 3  # plans 1..3 cover every movie, the others 1,000 movies each
PLAN_MOVIES = 1_000

SAMPLE_USERS = 5_000
SAMPLE_MOVIES = 2_000
SEED = 42

WORKERS = 2
CONNECTIONS = 64
THREADS = 2
WARMUP_SECONDS = 10  # long enough for both workers' caches to hold the sampled users
BATCH = 100

TARGET_RATIO = 0.6
TARGET_P99_MS = 10.0
NOISY_CPUS = 0.25  # other processes' load that makes a run worth repeating

CHECK_PATH = "/api/v1/access/{user}/movies/{movie}"
BATCH_PATH = "/api/v1/access/{user}/movies"


# --- deterministic ids: the same md5-based uuids in SQL (md5(text)::uuid) and in Python -----------


def bench_uuid(text: str) -> str:
    return str(uuid.UUID(hashlib.md5(text.encode()).hexdigest()))


def user_id(n: int) -> str:
    return bench_uuid(f"user-{n}")


def movie_id(n: int) -> str:
    return bench_uuid(f"movie-{n}")


SEED_SQL = [
    "SET TIME ZONE 'UTC'",
    # A stable non-negative 28-bit hash of a text, and a uuid named by a text.
    """
    CREATE FUNCTION public.bench_h(text) RETURNS integer
        LANGUAGE sql IMMUTABLE PARALLEL SAFE
        AS $$ SELECT ('x' || substr(md5($1), 1, 7))::bit(28)::integer $$
    """,
    """
    CREATE FUNCTION public.bench_uuid(text) RETURNS uuid
        LANGUAGE sql IMMUTABLE PARALLEL SAFE
        AS $$ SELECT md5($1)::uuid $$
    """,
    # Plans 1..3: every movie, with a role. Plans 4..10: 1,000 distinct movies each (stride 7 is
    # coprime with 10,000), overlapping one another.
    f"""
    INSERT INTO access.plan_coverage
        (plan_id, code, version, all_movies, movie_ids, role, active, updated_at)
    SELECT public.bench_uuid('plan-' || p), 'plan-' || p, 1, p <= {ALL_MOVIES_PLANS},
           CASE WHEN p <= {ALL_MOVIES_PLANS} THEN '{{}}'::uuid[]
                ELSE ARRAY(SELECT public.bench_uuid('movie-' || ((p * 1237 + k * 7) % {MOVIES} + 1))
                           FROM generate_series(0, {PLAN_MOVIES - 1}) AS k)
           END,
           CASE WHEN p <= {ALL_MOVIES_PLANS} THEN 'premium' END, true, now()
    FROM generate_series(1, {PLANS}) AS p
    """,
    # Every user: 1-2 subscriptions valid 30-364 days from now, 0-3 purchases (forever).
    f"""
    INSERT INTO access.user_grants (user_id, version, grants, updated_at)
    SELECT public.bench_uuid('user-' || n), 1,
           (SELECT jsonb_agg(grant_json ORDER BY ord) FROM (
                SELECT s AS ord, jsonb_build_object(
                    'source', 'subscription',
                    'source_id', public.bench_uuid('sub-' || n || '-' || s),
                    'plan_id', public.bench_uuid('plan-' || plan.p),
                    'movie_id', NULL,
                    'role', CASE WHEN plan.p <= {ALL_MOVIES_PLANS} THEN 'premium' END,
                    'valid_until', to_char(
                        date_trunc('second', now()) + make_interval(
                            days => 30 + public.bench_h('until-' || n || '-' || s) % 335),
                        'YYYY-MM-DD"T"HH24:MI:SS"+00:00"')
                ) AS grant_json
                FROM generate_series(1, 1 + public.bench_h('subs-' || n) % 2) AS s,
                     LATERAL (SELECT 1 + public.bench_h('sub-plan-' || n || '-' || s) % {PLANS}
                              AS p) AS plan
                UNION ALL
                SELECT 10 + b, jsonb_build_object(
                    'source', 'purchase',
                    'source_id', public.bench_uuid('buy-' || n || '-' || b),
                    'plan_id', NULL,
                    'movie_id', public.bench_uuid(
                        'movie-' || (1 + public.bench_h('movie-' || n || '-' || b) % {MOVIES})),
                    'role', NULL,
                    'valid_until', NULL
                )
                FROM generate_series(1, public.bench_h('buys-' || n) % 4) AS b
           ) AS user_grants),
           now()
    FROM generate_series(1, {USERS}) AS n
    """,
    "ANALYZE access.user_grants",
    "ANALYZE access.plan_coverage",
]


async def seed(database_url: str, sample_users: Sequence[str]) -> dict[str, int]:
    conn = await asyncpg.connect(common.asyncpg_dsn(database_url), timeout=10, command_timeout=300)
    try:
        async with conn.transaction():
            for statement in SEED_SQL:
                await conn.execute(statement)
        users = await conn.fetchval("SELECT count(*) FROM access.user_grants")
        grants = await conn.fetchval(
            "SELECT sum(jsonb_array_length(grants)) FROM access.user_grants"
        )
        plans = await conn.fetchval("SELECT count(*) FROM access.plan_coverage")
        found = await conn.fetchval(
            "SELECT count(*) FROM access.user_grants WHERE user_id = ANY($1::uuid[])",
            list(sample_users),
        )
    finally:
        await conn.close()
    if found != len(sample_users):
        raise common.BenchFailed(
            f"{len(sample_users) - found} sampled users are not in the seeded table"
        )
    return {"users": users, "grants": grants, "plans": plans}


# --- wrk scripts --------------------------------------------------------------------------------

LUA_PRELUDE = """
local users = {users}
local movies = {movies}
local auth = {auth}
local prepared = {{}}
local count = {count}
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("thread_number", threads)
end

-- k distinct quoted movie ids (a partial Fisher-Yates shuffle of the sample)
local function random_movies(k)
  local ids = {{}}
  for i = 1, k do
    local j = math.random(i, #movies)
    movies[i], movies[j] = movies[j], movies[i]
    ids[i] = '"' .. movies[i] .. '"'
  end
  return ids
end
"""

LUA_SINGLE = """
function init(args)
  math.randomseed({seed} + (thread_number or 1) - 1)
  local headers = {{["Authorization"] = auth}}
  for i = 1, count do
    local user = users[math.random(#users)]
    local movie = movies[math.random(#movies)]
    prepared[i] = wrk.format("GET", "/api/v1/access/" .. user .. "/movies/" .. movie, headers)
  end
end

function request()
  return prepared[math.random(count)]
end
"""

LUA_BATCH = """
function init(args)
  math.randomseed({seed} + (thread_number or 1) - 1)
  local headers = {{["Authorization"] = auth, ["Content-Type"] = "application/json"}}
  for i = 1, count do
    local user = users[math.random(#users)]
    local body = '{{"movie_ids":[' .. table.concat(random_movies({batch}), ",") .. ']}}'
    prepared[i] = wrk.format("POST", "/api/v1/access/" .. user .. "/movies", headers, body)
  end
end

function request()
  return prepared[math.random(count)]
end
"""


def write_lua(
    directory: Path,
    name: str,
    body: str,
    *,
    users: Sequence[str],
    movies: Sequence[str],
    token: str,
    count: int,
) -> Path:
    prelude = LUA_PRELUDE.format(
        users=common.lua_list(users),
        movies=common.lua_list(movies),
        auth=common.lua_string(f"Bearer {token}"),
        count=count,
    )
    path = directory / f"{name}.lua"
    path.write_text(prelude + body.format(seed=SEED, batch=BATCH))
    return path


# --- checks before load -------------------------------------------------------------------------


def preflight(base_url: str, token: str, users: Sequence[str], movies: Sequence[str]) -> None:
    """The endpoints answer as wrk will call them, and the seeded grants decide both ways."""
    rng = random.Random(SEED)
    headers = {"Authorization": f"Bearer {token}"}
    allowed = 0
    with httpx.Client(base_url=base_url, headers=headers, timeout=5.0) as client:
        for _ in range(200):
            answer = client.get(CHECK_PATH.format(user=rng.choice(users), movie=rng.choice(movies)))
            if answer.status_code != 200:
                raise common.BenchFailed(f"single check: {answer.status_code} {answer.text}")
            allowed += bool(answer.json()["allowed"])
        body = {"movie_ids": rng.sample(list(movies), BATCH)}
        answer = client.post(BATCH_PATH.format(user=rng.choice(users)), json=body)
        if answer.status_code != 200 or len(answer.json()["results"]) != BATCH:
            raise common.BenchFailed(f"batch check: {answer.status_code} {answer.text[:500]}")
    if not 0 < allowed < 200:
        raise common.BenchFailed(f"{allowed} of 200 sampled checks allowed: the seed is not read")
    print(f"preflight: {allowed} of 200 sampled checks allowed", flush=True)


# --- the run ------------------------------------------------------------------------------------


@dataclass
class Figures:
    bare: common.WrkResult
    single: common.WrkResult
    batch: common.WrkResult
    background: dict[str, float]  # CPUs other processes kept busy during each run

    @property
    def ratio(self) -> float:
        return self.single.rps / self.bare.rps if self.bare.rps else 0.0


def measure(
    server: common.Server, scripts: dict[str, Path], seconds: int, database: str
) -> Figures:
    background: dict[str, float] = {}

    def ours() -> list[int]:
        return [*server.pids(), *common.pids_with_cmdline(f" {database} ")]

    def wrk(url: str, script: Path | None, duration: int, label: str) -> common.WrkResult:
        print(f"wrk {label}: {duration}s, {CONNECTIONS} connections …", flush=True)
        with common.CpuMeter(ours) as meter:
            result = common.run_wrk(
                url, seconds=duration, connections=CONNECTIONS, threads=THREADS, script=script
            )
        background[label] = meter.background_cpus
        if not server.alive():
            raise common.BenchFailed(f"the server died during {label}:\n{server.log_tail()}")
        if result.socket_errors:
            print(f"  {result.socket_error_line} (max latency {result.max_ms:,.0f} ms)", flush=True)
        return result

    base = server.base_url
    wrk(base + "/", scripts["single"], WARMUP_SECONDS, "warm-up")
    bare = wrk(base + "/health/live", None, seconds, "bare")
    single = wrk(base + "/", scripts["single"], seconds, "single")
    batch = wrk(base + "/", scripts["batch100"], seconds, "batch100")
    return Figures(bare, single, batch, background)


def report(figures: Figures, seconds: int) -> dict[str, Any]:
    ratio = figures.ratio
    section = {
        "bare": figures.bare.figures(),
        "single": {**figures.single.figures(), "ratio": round(ratio, 3)},
        "batch100": figures.batch.figures(),
        "workers": WORKERS,
        "connections": CONNECTIONS,
        "seconds": seconds,
    }
    ratio_ok = ratio >= TARGET_RATIO
    p99_ok = figures.single.p99_ms <= TARGET_P99_MS
    bg = figures.background
    rows: list[list[Any]] = [
        [
            "bare",
            figures.bare.rps,
            figures.bare.p50_ms,
            figures.bare.p99_ms,
            bg["bare"],
            "reference",
            "",
        ],
        [
            "single",
            figures.single.rps,
            figures.single.p50_ms,
            figures.single.p99_ms,
            bg["single"],
            f"ratio {ratio:.2f} ≥ {TARGET_RATIO}",
            common.mark(ratio_ok),
        ],
        [
            "",
            "",
            "",
            "",
            "",
            f"p99 {figures.single.p99_ms:.2f} ≤ {TARGET_P99_MS:g} ms",
            common.mark(p99_ok),
        ],
        [
            "batch100",
            figures.batch.rps,
            figures.batch.p50_ms,
            figures.batch.p99_ms,
            bg["batch100"],
            "informative",
            "",
        ],
    ]
    machine = common.machine()
    common.print_table(
        ["access", "rps", "p50 ms", "p99 ms", "other cpus", "target", ""],
        rows,
        title=(
            f"access: {WORKERS} workers, {CONNECTIONS} connections, {THREADS} wrk threads, "
            f"{seconds}s each · {machine['cpus']} cpus · python {machine['python']}"
        ),
    )
    busiest = max(bg[label] for label in ("bare", "single", "batch100"))
    if busiest >= NOISY_CPUS:
        print(
            f"note: other processes kept up to {busiest:.2f} CPUs busy during these runs;"
            " the figures are noisy, rerun on a quiet machine to compare"
        )
    return section


def run() -> int:
    seconds = common.bench_seconds()
    common.ensure_wrk()
    database_url = common.bench_database_url()
    amqp_url = common.bench_amqp_url()
    prefix = common.unique_prefix("bench-access")

    rng = random.Random(SEED)
    users = [user_id(n) for n in rng.sample(range(1, USERS + 1), SAMPLE_USERS)]
    movies = [movie_id(n) for n in rng.sample(range(1, MOVIES + 1), SAMPLE_MOVIES)]
    token = mint_service_token(AuthSettings(), "bench", ttl_seconds=3600 + 4 * seconds)

    server: common.Server | None = None
    try:
        started = time.monotonic()
        asyncio.run(dbadmin.drop_database(database_url))
        asyncio.run(dbadmin.ensure_database(database_url))
        common.migrate(database_url, "access_api")
        counts = asyncio.run(seed(database_url, users))
        print(
            f"seeded {counts['users']:,} users, {counts['grants']:,} grants,"
            f" {counts['plans']} plans over {MOVIES:,} movies in {time.monotonic() - started:.1f}s",
            flush=True,
        )

        port = common.free_port()
        env = {
            **os.environ,
            "ACCESS_DATABASE_URL": database_url,
            "ACCESS_AMQP_URL": amqp_url,
            "ACCESS_BROKER_PREFIX": prefix,
            "ACCESS_LOG_LEVEL": "WARNING",
            # PostgreSQL is shared: two workers keep at most 2 x 2 x (4 + 4) connections.
            "ACCESS_DB_POOL_SIZE": "4",
            "LOG_LEVEL": "WARNING",
        }
        server = common.Server(
            common.cinema_command(
                "access",
                "api",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                str(WORKERS),
            ),
            port=port,
            env=env,
            name="access-api",
            workers=WORKERS,
        )
        server.start()
        print(f"access-api on {server.base_url}, workers {server.worker_pids()}", flush=True)
        preflight(server.base_url, token, users, movies)

        with tempfile.TemporaryDirectory(prefix="bench-access-") as tmp:
            scripts = {
                "single": write_lua(
                    Path(tmp),
                    "single",
                    LUA_SINGLE,
                    users=users,
                    movies=movies,
                    token=token,
                    count=20_000,
                ),
                "batch100": write_lua(
                    Path(tmp),
                    "batch100",
                    LUA_BATCH,
                    users=users,
                    movies=movies,
                    token=token,
                    count=2_000,
                ),
            }
            figures = measure(server, scripts, seconds, common.BENCH_DATABASE)
        section = report(figures, seconds)
        path = common.write_results("access", section)
        print(f"\nwritten: {path.relative_to(common.ROOT)}")
        return 0
    finally:
        cleanup(server, database_url, amqp_url, prefix)


def cleanup(server: common.Server | None, database_url: str, amqp_url: str, prefix: str) -> None:
    if server is not None:
        try:
            server.stop()
        except Exception as exc:
            print(f"cleanup: stopping the server failed: {exc}", file=sys.stderr)
    try:
        asyncio.run(dbadmin.drop_database(database_url))
    except Exception as exc:
        print(f"cleanup: dropping {database_url} failed: {exc}", file=sys.stderr)
    try:
        asyncio.run(common.delete_broker_names(amqp_url, prefix))
    except Exception as exc:
        print(f"cleanup: removing broker names {prefix}* failed: {exc}", file=sys.stderr)


def main() -> None:
    common.run_main("access", run)


if __name__ == "__main__":
    main()
