"""``make bench-renewals``: due subscriptions renewed by ``cinema billing run-jobs --now``.

A fresh database gets one monthly plan and 20,000 active subscriptions whose period ends within
the renewal lead, each with a card saved at the sandbox provider (rows written straight in SQL:
what a checkout with ``save_payment_method`` leaves behind). One gateway-api serves the
off-session charges. Measured: wall time of one ``run-jobs`` process renewing all of them, then
of two processes started together on another 20,000 (they split the work with SKIP LOCKED).
Target ≥ 500 subscriptions/s.

run-jobs renews a subscription from the gateway's answer to the charge; the charge.succeeded
webhook the sandbox then sends (and the payment.succeeded event it becomes) are not waited for,
but they load the same gateway while it runs. Whatever is left of them when run-jobs finishes is
reported and delivered before the next measurement starts, so none measures the other's work.

    python -m bench.renewals        # BENCH_RENEWALS=20000 by default
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime
from typing import Any

import asyncpg

from bench import common
from bench.suite import PLAN_ID, PLAN_SQL, Suite

TARGET_PER_S = 500.0


def subscriptions_count() -> int:
    raw = os.environ.get("BENCH_RENEWALS", "")
    count = int(raw) if raw.isdigit() else 20_000
    if not 1 <= count <= 200_000:
        raise common.BenchFailed("BENCH_RENEWALS must be between 1 and 200000")
    return count


# Subscriptions ``first .. first + count - 1``, due now (period ends in 30 minutes), each with
# its own user and a card saved for that user at the sandbox.
SUBSCRIPTIONS_SQL = f"""
INSERT INTO billing.subscription (id, user_id, email, locale, plan_id, status, months,
                                  current_period_start, current_period_end, auto_renew,
                                  cancel_at_period_end, payment_method_ref, renewal_attempts,
                                  trial)
SELECT md5('sub-' || n)::uuid, md5('user-' || n)::uuid, 'user' || n || '@bench.local', 'ru',
       '{PLAN_ID}', 'active', 1, $3::timestamptz - interval '30 days' + interval '30 minutes',
       $3::timestamptz + interval '30 minutes', true, false, 'pm_bench_' || n, 0, false
FROM generate_series($1::int, $1::int + $2::int - 1) AS n
"""

METHODS_SQL = """
INSERT INTO gateway.sandbox_payment_method (id, customer_id, card_last4, fails_off_session)
SELECT 'pm_bench_' || n, md5('user-' || n)::uuid, '4242', false
FROM generate_series($1::int, $1::int + $2::int - 1) AS n
"""

RENEWED_SQL = """
SELECT count(*) FROM billing.subscription
WHERE current_period_end > $1::timestamptz + interval '20 days'
"""

# The sandbox's webhooks (one charge.succeeded per renewal) not yet delivered to the gateway.
WEBHOOKS_DUE_SQL = "SELECT count(*) FROM gateway.sandbox_webhook WHERE delivered_at IS NULL"


async def seed(database_url: str, first: int, count: int, now: datetime) -> None:
    conn = await asyncpg.connect(common.asyncpg_dsn(database_url), command_timeout=300)
    try:
        async with conn.transaction():
            if first == 1:
                await conn.execute(PLAN_SQL)
            await conn.execute(SUBSCRIPTIONS_SQL, first, count, now)
            await conn.execute(METHODS_SQL, first, count)
        await conn.execute("ANALYZE billing.subscription")
        await conn.execute("ANALYZE gateway.sandbox_payment_method")
    finally:
        await conn.close()


async def renewed(database_url: str, now: datetime) -> int:
    conn = await asyncpg.connect(common.asyncpg_dsn(database_url))
    try:
        count: int = await conn.fetchval(RENEWED_SQL, now)
        return count
    finally:
        await conn.close()


async def drain_webhooks(database_url: str, *, timeout_s: float = 600.0) -> tuple[int, float]:
    """Wait until the gateway has received every sandbox webhook; returns (how many were still
    to deliver when run-jobs finished, seconds it took). The renewals are counted without them
    (billing settles each charge from the gateway's answer), but a measurement must not leave
    its webhooks to be processed during the next one."""
    conn = await asyncpg.connect(common.asyncpg_dsn(database_url))
    try:
        started = time.monotonic()
        backlog: int = await conn.fetchval(WEBHOOKS_DUE_SQL)
        while await conn.fetchval(WEBHOOKS_DUE_SQL):
            if time.monotonic() - started > timeout_s:
                raise common.BenchFailed(f"sandbox webhooks still undelivered after {timeout_s}s")
            await asyncio.sleep(0.5)
        return backlog, time.monotonic() - started
    finally:
        await conn.close()


def run_jobs(suite: Suite, processes: int, now: datetime) -> float:
    """Seconds until ``processes`` run-jobs passes started together have all finished."""
    started = time.monotonic()
    children = [
        suite.popen("billing", "run-jobs", "--now", now.isoformat()) for _ in range(processes)
    ]
    try:
        for child in children:
            out, err = child.communicate(timeout=900)
            if child.returncode != 0:
                raise common.BenchFailed(f"run-jobs failed ({child.returncode}):\n{err[-3000:]}")
            print(f"  run-jobs: {out.strip()}", flush=True)
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    return time.monotonic() - started


def measure(suite: Suite, count: int, processes: int, first: int) -> dict[str, Any]:
    now = datetime.now(UTC).replace(microsecond=0)
    asyncio.run(seed(suite.database_url, first, count, now))
    before = asyncio.run(renewed(suite.database_url, now))
    print(f"{processes} run-jobs process(es) on {count:,} due subscriptions …", flush=True)
    with common.CpuMeter(suite.pids) as meter:
        seconds = run_jobs(suite, processes, now)
    done = asyncio.run(renewed(suite.database_url, now)) - before
    suite.check_alive()
    if done != count:
        raise common.BenchFailed(f"{done} of {count} subscriptions renewed")
    backlog, drained = asyncio.run(drain_webhooks(suite.database_url))
    print(f"  {backlog:,} sandbox webhooks were still to deliver: {drained:.1f}s", flush=True)
    return {
        "seconds": seconds,
        "per_s": count / seconds,
        "background": meter.background_cpus,
        "webhook_backlog": backlog,
    }


def run() -> int:
    count = subscriptions_count()
    load = os.getloadavg()
    with Suite("renewals") as suite:
        suite.start("gateway-api")
        one = measure(suite, count, 1, 1)
        two = measure(suite, count, 2, count + 1)
    section = {
        "subscriptions": count,
        "per_s": round(one["per_s"], 1),
        "per_s_two_workers": round(two["per_s"], 1),
        "seconds": round(one["seconds"], 2),
        "seconds_two_workers": round(two["seconds"], 2),
        "webhook_backlog": one["webhook_backlog"],
        "webhook_backlog_two_workers": two["webhook_backlog"],
        "load_before": [round(x, 2) for x in load],
    }
    best = max(one["per_s"], two["per_s"])
    common.print_table(
        ["renewals", "subscriptions", "seconds", "per s", "other cpus", "target", ""],
        [
            [
                "1 worker",
                count,
                one["seconds"],
                one["per_s"],
                one["background"],
                f"≥ {TARGET_PER_S:g}/s",
                common.mark(one["per_s"] >= TARGET_PER_S),
            ],
            [
                "2 workers",
                count,
                two["seconds"],
                two["per_s"],
                two["background"],
                f"best {best:,.0f}/s",
                common.mark(best >= TARGET_PER_S),
            ],
        ],
        title=f"renewals: run-jobs --now, sandbox provider, one gateway-api · load {load[0]:.2f}",
    )
    path = common.write_results("renewals", section)
    print(f"\nwritten: {path.relative_to(common.ROOT)}")
    return 0


def main() -> None:
    common.run_main("renewals", run)


if __name__ == "__main__":
    main()
