"""``make bench-pipeline``: sandbox payments until access is granted, across the real processes.

gateway-api, billing-api, billing-worker, access-api and access-worker on a fresh database and
broker prefix. One plan covering every movie is written into billing's catalog and into the
access projection (what its ``plan.changed`` would leave there). N users each open a checkout
first (not measured); then the N sandbox payments are sent (``POST /sandbox/checkout/{id}/pay``,
``PAY_CONCURRENCY`` in flight). The path measured: sandbox → signed webhook → gateway →
``payment.succeeded`` → billing-worker activates → ``entitlements.changed`` → access-worker →
access-api.

Everything is timed on the client, end to end, per payment:

- latency: from the moment the load generator sends the pay request to the moment the access
  API answers ``allowed`` for that user (p50/p95/p99/max);
- payments/s: N / (first pay request sent → last user allowed).

The load generator must not weigh on what it measures, so it does not poll: it listens to the
access projection's ``NOTIFY access_changed`` on one PostgreSQL connection and asks the access API
once per notified user (see :mod:`bench.access_watch`). Beside the figures it prints the CPU
milliseconds per payment of every process (RabbitMQ and the database's backends included, see
:mod:`bench.cpu`), so a reader sees where the CPU goes; ``BENCH_PROFILE=1`` adds a py-spy flame
graph of each service for the measured window (:mod:`bench.profiling`).

Targets: ≥ 300 payments/s, p99 ≤ 1000 ms.

    python -m bench.pipeline        # BENCH_PAYMENTS=1000 by default
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from typing import Any

import asyncpg
import httpx

from bench import common, cpu, profiling
from bench.access_watch import AccessWatch
from bench.suite import PLAN_ID, PLAN_SQL, Suite
from shared.auth import AuthSettings, mint_service_token, mint_user_token

TARGET_PER_S = 300.0
TARGET_P99_MS = 1000.0
CARD = "4242424242424242"
MOVIE = "5b1d3a52-0000-4000-8000-00000000abcd"
CHECKOUT_CONCURRENCY = 8
CHECKOUT_ATTEMPTS = 5
PAY_CONCURRENCY = 64
PER_CLIENT = 8
TIMEOUT_S = 120.0

COVERAGE_SQL = f"""
INSERT INTO access.plan_coverage
    (plan_id, code, version, all_movies, movie_ids, role, active, updated_at)
VALUES ('{PLAN_ID}', 'bench-monthly', 1, true, '{{}}'::uuid[], NULL, true, now())
"""

SUCCEEDED_SQL = """
SELECT count(DISTINCT user_id) FROM billing.payment
WHERE user_id = ANY($1::uuid[]) AND status = 'succeeded'
"""


def payments_count() -> int:
    raw = os.environ.get("BENCH_PAYMENTS", "")
    count = int(raw) if raw.isdigit() else 1000
    if not 1 <= count <= 20_000:
        raise common.BenchFailed("BENCH_PAYMENTS must be between 1 and 20000")
    return count


async def seed(database_url: str) -> None:
    conn = await asyncpg.connect(common.asyncpg_dsn(database_url))
    try:
        await conn.execute(PLAN_SQL)
        await conn.execute(COVERAGE_SQL)
    finally:
        await conn.close()


async def open_checkouts(billing_url: str, users: list[uuid.UUID]) -> list[str]:
    """One pending subscription per user; their hosted checkout URLs."""
    auth = AuthSettings()
    limit = asyncio.Semaphore(CHECKOUT_CONCURRENCY)

    async def checkout(client: httpx.AsyncClient, user: uuid.UUID) -> str:
        token = mint_user_token(auth, user, email=f"{user.hex[:8]}@bench.local")
        # The same key on every attempt: a 503 (the shared database turned a connection away)
        # is asked again, as its answer says, and never opens a second checkout.
        headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": f"bench-{user}"}
        for _ in range(CHECKOUT_ATTEMPTS):
            async with limit:
                answer = await client.post(
                    "/api/v1/subscriptions", json={"plan_id": PLAN_ID}, headers=headers
                )
            if answer.status_code != 503:
                break
            await asyncio.sleep(0.5)
        if answer.status_code != 201:
            raise common.BenchFailed(f"checkout: {answer.status_code} {answer.text[:300]}")
        url: str = answer.json()["latest_payment"]["checkout_url"]
        return url

    async with httpx.AsyncClient(base_url=billing_url, timeout=30) as client:
        return list(await asyncio.gather(*(checkout(client, user) for user in users)))


async def pay_and_watch(watch: AccessWatch, checkouts: list[tuple[uuid.UUID, str]]) -> None:
    """Send every payment, ``PAY_CONCURRENCY`` in flight, while ``watch`` follows the access API;
    returns when every user is allowed."""

    async def pay(client: httpx.AsyncClient, user: uuid.UUID, url: str) -> None:
        watch.paid(user)
        for attempt in range(3):
            try:
                answer = await client.post(url + "/pay", json={"card_number": CARD})
                break
            except httpx.TransportError:
                # a kept-alive connection the server had just closed: paying a session
                # again is idempotent, so the person's retry is safe
                if attempt == 2:
                    raise
        if answer.status_code >= 300:
            raise common.BenchFailed(f"pay: {answer.status_code} {answer.text[:300]}")

    async def payer(client: httpx.AsyncClient, todo: list[tuple[uuid.UUID, str]]) -> None:
        while todo:
            await pay(client, *todo.pop())

    # Several small clients rather than one wide one: httpx looks over every pooled connection
    # for each request, which at 64 connections made the load generator the busiest process.
    limits = httpx.Limits(max_connections=PER_CLIENT)
    clients = [
        httpx.AsyncClient(timeout=30, limits=limits) for _ in range(PAY_CONCURRENCY // PER_CLIENT)
    ]
    todo = list(reversed(checkouts))  # popped from the end: sent in checkout order
    try:
        payments = asyncio.gather(
            *(payer(clients[n % len(clients)], todo) for n in range(PAY_CONCURRENCY))
        )
        timeout_s = max(TIMEOUT_S, len(checkouts) / 20)
        await asyncio.gather(payments, watch.wait(timeout_s))
    finally:
        for client in clients:
            await client.aclose()


async def measure(
    access_url: str,
    database_url: str,
    checkouts: list[tuple[uuid.UUID, str]],
    meter: cpu.ProcessCpu,
) -> AccessWatch:
    """The payments, watched from one LISTEN connection (see bench.access_watch)."""
    token = mint_service_token(AuthSettings(), "bench", ttl_seconds=3600)
    users = [user for user, _ in checkouts]
    watch = AccessWatch(access_url, database_url, users, movie=MOVIE, token=token)
    meter.claim(await watch.listen())
    try:
        await pay_and_watch(watch, checkouts)
    finally:
        await watch.close()
    return watch


async def succeeded_payments(database_url: str, users: list[uuid.UUID]) -> int:
    conn = await asyncpg.connect(common.asyncpg_dsn(database_url))
    try:
        count: int = await conn.fetchval(SUCCEEDED_SQL, users)
        return count
    finally:
        await conn.close()


def percentile(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def run() -> int:
    count = payments_count()
    load = os.getloadavg()
    users = [uuid.uuid4() for _ in range(count)]
    env = {"BILLING_JOBS_INTERVAL_SECONDS": "3600"}
    with Suite("pipeline", extra_env=env) as suite:
        asyncio.run(seed(suite.database_url))
        suite.start("gateway-api")
        billing = suite.start("billing-api")
        access = suite.start("access-api")
        suite.start("billing-worker")
        suite.start("access-worker")
        asyncio.run(suite.wait_consumers(["billing", "access"]))
        started = time.monotonic()
        urls = asyncio.run(open_checkouts(billing.base_url, users))
        print(f"{count:,} checkouts opened in {time.monotonic() - started:.1f}s", flush=True)
        print(f"sending {count:,} sandbox payments …", flush=True)
        meter = cpu.ProcessCpu(suite.roots, database=suite.database_name)
        with profiling.recording(suite.python_pids()), meter:
            watch = asyncio.run(
                measure(
                    access.base_url,
                    suite.database_url,
                    list(zip(users, urls, strict=True)),
                    meter,
                )
            )
        suite.check_alive()
        succeeded = asyncio.run(succeeded_payments(suite.database_url, users))
    if succeeded != count:
        raise common.BenchFailed(f"{succeeded} of {count} users have a succeeded payment")
    latencies = sorted((watch.allowed_at[u] - watch.paid_at[u]) * 1000 for u in users)
    seconds = max(watch.allowed_at.values()) - min(watch.paid_at.values())
    per_s = count / seconds
    p50, p95, p99 = (percentile(latencies, q) for q in (50, 95, 99))
    cpu_ms = meter.per_unit_ms(count)
    section: dict[str, Any] = {
        "payments": count,
        "payments_per_s": round(per_s, 1),
        "p50_ms": round(p50, 1),
        "p95_ms": round(p95, 1),
        "p99_ms": round(p99, 1),
        "max_ms": round(latencies[-1], 1),
        "seconds": round(seconds, 2),
        "cpu_ms_per_payment": cpu_ms,
        "other_cpus": round(meter.background_cpus, 2),
        "watch": {
            "notifications": watch.notifications,
            "access_checks": watch.checks,
            "retries": watch.retries,
            "allowed_by_fallback": watch.allowed_by_fallback,
            "unavailable": watch.unavailable,
        },
        "load_before": [round(x, 2) for x in load],
    }
    figures = ["payments", "seconds", "per s", "p50 ms", "p95 ms", "p99 ms", "max ms"]
    common.print_table(
        ["pipeline", *figures, "other cpus", "target", ""],
        [
            [
                "pay → allowed",
                count,
                seconds,
                per_s,
                p50,
                p95,
                p99,
                latencies[-1],
                meter.background_cpus,
                f"≥ {TARGET_PER_S:g}/s",
                common.mark(per_s >= TARGET_PER_S),
            ],
            [*[""] * 9, f"p99 ≤ {TARGET_P99_MS:g} ms", common.mark(p99 <= TARGET_P99_MS)],
        ],
        title=(
            f"pipeline: {count:,} sandbox payments, {PAY_CONCURRENCY} in flight, one process of "
            f"each · load {load[0]:.2f}"
        ),
    )
    cpu.print_breakdown(meter, count, "payment")
    print(
        f"\nwatch: {watch.notifications:,} notifications, {watch.checks:,} access checks "
        f"({watch.retries:,} retries, {watch.unavailable:,} answered 503), "
        f"{watch.allowed_by_fallback:,} users found by the fallback poll"
    )
    path = common.write_results("pipeline", section)
    print(f"\nwritten: {path.relative_to(common.ROOT)}")
    return 0


def main() -> None:
    common.run_main("pipeline", run)


if __name__ == "__main__":
    main()
