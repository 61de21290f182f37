"""``make bench-pipeline``: sandbox payments until access is granted, across the real processes.

gateway-api, billing-api, billing-worker, access-api and access-worker on a fresh database and
broker prefix. One plan covering every movie is written into billing's catalog and into the
access projection (what its ``plan.changed`` would leave there). N users each open a checkout
first (not measured); then all N sandbox payments are fired at once (``POST
/sandbox/checkout/{id}/pay``) and the access API is polled until it answers ``allowed`` for every
user. The path measured: signed webhook → gateway → ``payment.succeeded`` → billing-worker
activates → ``entitlements.changed`` → access-worker → access-api.

- payments/s: N / (first payment fired → last user allowed by the access API);
- p50/p99: per payment, from the webhook accepted by the gateway (``webhook_event.received_at``)
  to access granted (the projection row written, which the access API serves from then on).

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

from bench import common
from bench.suite import PLAN_ID, PLAN_SQL, Suite
from shared.auth import AuthSettings, mint_service_token, mint_user_token

TARGET_PER_S = 300.0
TARGET_P99_MS = 1000.0
CARD = "4242424242424242"
MOVIE = "5b1d3a52-0000-4000-8000-00000000abcd"
CHECKOUT_CONCURRENCY = 8
PAY_CONCURRENCY = 64
PER_CLIENT = 8
POLL_WINDOW = 8
TIMEOUT_S = 120.0

COVERAGE_SQL = f"""
INSERT INTO access.plan_coverage
    (plan_id, code, version, all_movies, movie_ids, role, active, updated_at)
VALUES ('{PLAN_ID}', 'bench-monthly', 1, true, '{{}}'::uuid[], NULL, true, now())
"""

LATENCY_SQL = """
SELECT extract(epoch FROM g.updated_at - w.received_at) * 1000 AS ms
FROM billing.payment p
JOIN LATERAL (SELECT min(received_at) AS received_at FROM gateway.webhook_event
              WHERE payment_id = p.id) w ON true
JOIN access.user_grants g ON g.user_id = p.user_id
WHERE p.user_id = ANY($1::uuid[]) AND p.status = 'succeeded'
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
        async with limit:
            answer = await client.post(
                "/api/v1/subscriptions",
                json={"plan_id": PLAN_ID},
                headers={"Authorization": f"Bearer {token}"},
            )
        if answer.status_code != 201:
            raise common.BenchFailed(f"checkout: {answer.status_code} {answer.text[:300]}")
        url: str = answer.json()["latest_payment"]["checkout_url"]
        return url

    async with httpx.AsyncClient(base_url=billing_url, timeout=30) as client:
        return list(await asyncio.gather(*(checkout(client, user) for user in users)))


async def pay_and_wait(
    access_url: str, checkout_urls: list[str], users: list[uuid.UUID]
) -> tuple[float, float]:
    """Fire every payment at once, poll access until all are allowed: (fired, all-allowed)."""
    token = mint_service_token(AuthSettings(), "bench", ttl_seconds=600)
    waiting = set(users)
    limits = httpx.Limits(max_connections=PER_CLIENT + POLL_WINDOW)

    async def pay(client: httpx.AsyncClient, url: str) -> None:
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

    async def payer(client: httpx.AsyncClient, todo: list[str]) -> None:
        while todo:
            await pay(client, todo.pop())

    async def check(client: httpx.AsyncClient, user: uuid.UUID) -> None:
        answer = await client.get(
            f"{access_url}/api/v1/access/{user}/movies/{MOVIE}",
            headers={"Authorization": f"Bearer {token}"},
        )
        if answer.status_code != 200:
            raise common.BenchFailed(f"access: {answer.status_code} {answer.text[:300]}")
        if answer.json()["allowed"]:
            waiting.discard(user)

    async def poll(client: httpx.AsyncClient) -> None:
        # Oldest payments first: only the front of the line is asked about, so the poller
        # costs the access API a few requests per payment instead of one per payment per round
        # (which would measure the poller rather than the pipeline).
        line = list(users)
        while line:
            front = line[:POLL_WINDOW]
            await asyncio.gather(*(check(client, user) for user in front))
            line = [user for user in line if user in waiting]
            if line and line[0] in front:
                await asyncio.sleep(0.01)

    # Several small clients rather than one wide one: httpx looks over every pooled connection
    # for each request, which at 64 connections made the load generator the busiest process.
    clients = [
        httpx.AsyncClient(timeout=30, limits=limits) for _ in range(PAY_CONCURRENCY // PER_CLIENT)
    ]
    todo = list(reversed(checkout_urls))  # popped from the end: fired in checkout order
    try:
        fired = time.monotonic()
        payments = asyncio.gather(
            *(payer(clients[n % len(clients)], todo) for n in range(PAY_CONCURRENCY))
        )
        try:
            async with asyncio.timeout(TIMEOUT_S):
                await asyncio.gather(payments, poll(clients[0]))
        except TimeoutError:
            raise common.BenchFailed(
                f"{len(waiting)} of {len(users)} users still without access after {TIMEOUT_S:g}s"
            ) from None
        return fired, time.monotonic()
    finally:
        for client in clients:
            await client.aclose()


async def latencies_ms(database_url: str, users: list[uuid.UUID]) -> list[float]:
    conn = await asyncpg.connect(common.asyncpg_dsn(database_url))
    try:
        rows = await conn.fetch(LATENCY_SQL, users)
    finally:
        await conn.close()
    return sorted(float(row["ms"]) for row in rows)


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
        print(f"firing {count:,} sandbox payments …", flush=True)
        with common.CpuMeter(suite.pids) as meter:
            fired, done = asyncio.run(pay_and_wait(access.base_url, urls, users))
        suite.check_alive()
        latencies = asyncio.run(latencies_ms(suite.database_url, users))
    if len(latencies) != count:
        raise common.BenchFailed(f"{len(latencies)} of {count} payments traced end to end")
    seconds = done - fired
    per_s = count / seconds
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    section: dict[str, Any] = {
        "payments": count,
        "payments_per_s": round(per_s, 1),
        "p50_ms": round(p50, 1),
        "p99_ms": round(p99, 1),
        "max_ms": round(latencies[-1], 1),
        "seconds": round(seconds, 2),
        "load_before": [round(x, 2) for x in load],
    }
    common.print_table(
        [
            "pipeline",
            "payments",
            "seconds",
            "per s",
            "p50 ms",
            "p99 ms",
            "other cpus",
            "target",
            "",
        ],
        [
            [
                "pay → allowed",
                count,
                seconds,
                per_s,
                p50,
                p99,
                meter.background_cpus,
                f"≥ {TARGET_PER_S:g}/s",
                common.mark(per_s >= TARGET_PER_S),
            ],
            [
                "",
                "",
                "",
                "",
                "",
                "",
                "",
                f"p99 ≤ {TARGET_P99_MS:g} ms",
                common.mark(p99 <= TARGET_P99_MS),
            ],
        ],
        title=(
            f"pipeline: {count:,} concurrent sandbox payments, one process of each · "
            f"load {load[0]:.2f}"
        ),
    )
    path = common.write_results("pipeline", section)
    print(f"\nwritten: {path.relative_to(common.ROOT)}")
    return 0


def main() -> None:
    common.run_main("pipeline", run)


if __name__ == "__main__":
    main()
