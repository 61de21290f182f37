"""``make bench-renewals``: due subscriptions renewed by billing-worker, as in production.

A fresh database gets one monthly plan; one gateway-api serves the off-session charges. For each
measurement, billing-worker is started and left idle first (consumers on their queue, its jobs
pass running every ``JOBS_INTERVAL_S``), then N active subscriptions whose period ends within the
renewal lead are written in one transaction, each with a card saved at the sandbox provider (rows
written straight in SQL: what a checkout with ``save_payment_method`` leaves behind). The worker's
next pass finds them due and renews them; meanwhile it also consumes the ``payment.succeeded``
events of the sandbox's webhooks and relays its outbox, as a production worker does.

Measured, on the client: from the seed's commit to the moment every one of the N subscriptions is
settled in billing -- its period moved on, which billing does only when the renewal payment
succeeded and was applied (checked at the end: each has a succeeded renewal payment). The start
includes up to one jobs interval of waiting for the next pass, as in production (where the
interval is 30 s; here 0.5 s). Then the same on another N with two billing-worker processes
(``per_s_two_workers``: they split the renewals with SKIP LOCKED and share the event queue).
Only the public commands (``cinema gateway api``, ``cinema billing worker``) and the tables
``billing.subscription``, ``billing.payment`` and ``gateway.webhook_event`` are relied on.

Between measurements the webhooks and events a measurement caused are left to finish (the gateway
has processed a webhook for every renewal payment, billing's queue is empty) and the workers are
stopped, so none measures the other's work; what was still to process at the last settlement is
reported (``webhook_backlog``). Beside the figures: CPU milliseconds per renewal of each process
(:mod:`bench.cpu`); ``BENCH_PROFILE=1`` adds py-spy flame graphs (:mod:`bench.profiling`).

Target ≥ 500 subscriptions/s.

    python -m bench.renewals        # BENCH_RENEWALS=20000 by default
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime
from typing import Any

import asyncpg

from bench import common, cpu, profiling
from bench.suite import PLAN_ID, PLAN_SQL, Suite

TARGET_PER_S = 500.0
JOBS_INTERVAL_S = 0.5
POLL_S = 0.25
TIMEOUT_S = 300.0


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

# Subscriptions whose period moved on: renewed, and only a succeeded renewal payment does that.
SETTLED_SQL = """
SELECT count(*) FROM billing.subscription
WHERE current_period_end > $1::timestamptz + interval '20 days'
"""

# The same, proved by the payments: each has a succeeded renewal payment.
PAID_SQL = """
SELECT count(*) FROM billing.subscription s
WHERE s.current_period_end > $1::timestamptz + interval '20 days'
  AND EXISTS (SELECT 1 FROM billing.payment p
              WHERE p.subscription_id = s.id AND p.purpose = 'renewal' AND p.status = 'succeeded')
"""

# Renewal payments for which the gateway has not yet processed a webhook (the sandbox sends one
# per charge).
WEBHOOKS_DUE_SQL = """
SELECT count(*) FROM billing.payment p
WHERE p.purpose = 'renewal' AND p.status = 'succeeded'
  AND NOT EXISTS (SELECT 1 FROM gateway.webhook_event w
                  WHERE w.payment_id = p.id AND w.processed_at IS NOT NULL)
"""


async def seed_and_wait(
    database_url: str, first: int, count: int, meter: cpu.ProcessCpu
) -> tuple[float, float, int]:
    """Seed ``count`` due subscriptions and wait until all are settled: (committed, all settled
    — client monotonic times —, webhooks still to process at that moment)."""
    dsn = common.asyncpg_dsn(database_url)
    now = datetime.now(UTC).replace(microsecond=0)
    seeder = await asyncpg.connect(dsn, command_timeout=300)
    watcher = await asyncpg.connect(dsn)
    meter.ignore(seeder.get_server_pid())
    meter.claim(watcher.get_server_pid())
    try:
        before: int = await watcher.fetchval(SETTLED_SQL, now)
        async with seeder.transaction():
            if first == 1:
                await seeder.execute(PLAN_SQL)
            await seeder.execute(SUBSCRIPTIONS_SQL, first, count, now)
            await seeder.execute(METHODS_SQL, first, count)
        committed = time.monotonic()
        await seeder.execute("ANALYZE billing.subscription")
        await seeder.execute("ANALYZE gateway.sandbox_payment_method")
        await seeder.close()
        deadline = committed + max(TIMEOUT_S, count / 5)
        settled = 0
        while settled < count:
            await asyncio.sleep(POLL_S)
            settled = await watcher.fetchval(SETTLED_SQL, now) - before
            if time.monotonic() > deadline:
                raise common.BenchFailed(f"{settled} of {count} renewals settled in time")
        done = time.monotonic()
        backlog: int = await watcher.fetchval(WEBHOOKS_DUE_SQL)
        paid: int = await watcher.fetchval(PAID_SQL, now)
        if paid - before != count:
            raise common.BenchFailed(f"{paid - before} of {count} renewals have a paid payment")
        return committed, done, backlog
    finally:
        if not seeder.is_closed():
            await seeder.close()
        await watcher.close()


async def drain(suite: Suite, *, timeout_s: float = 600.0) -> float:
    """Until the gateway has processed every renewal's webhook and billing's queue is empty."""
    conn = await asyncpg.connect(common.asyncpg_dsn(suite.database_url))
    try:
        started = time.monotonic()
        # Tens of thousands of payments and webhooks were written since the tables were last
        # analysed: without fresh statistics the anti-join below may be planned as a nested
        # loop over both, and the check itself takes minutes.
        await conn.execute("ANALYZE billing.payment")
        await conn.execute("ANALYZE gateway.webhook_event")
        while await conn.fetchval(WEBHOOKS_DUE_SQL) or await suite.queue_depth("billing"):
            if time.monotonic() - started > timeout_s:
                raise common.BenchFailed(f"webhooks or events still unprocessed after {timeout_s}s")
            await asyncio.sleep(0.5)
        return time.monotonic() - started
    finally:
        await conn.close()


def measure(suite: Suite, count: int, workers: int, first: int) -> dict[str, Any]:
    names = (
        ["billing-worker"] if workers == 1 else [f"billing-worker-{n + 1}" for n in range(workers)]
    )
    for name in names:
        suite.start("billing-worker", name=name)
    asyncio.run(suite.wait_consumers(["billing"], at_least=workers))
    time.sleep(2 * JOBS_INTERVAL_S)  # every worker past its first (empty) jobs pass
    print(f"{workers} billing-worker(s) on {count:,} due subscriptions …", flush=True)
    meter = cpu.ProcessCpu(suite.roots, database=suite.database_name)
    profiled = {name: suite.servers[name].worker_pids() for name in [*names, "gateway-api"]}
    with profiling.recording(profiled), meter:
        committed, done, backlog = asyncio.run(
            seed_and_wait(suite.database_url, first, count, meter)
        )
    suite.check_alive()
    drained = asyncio.run(drain(suite))
    print(f"  {backlog:,} webhooks were still to process: {drained:.1f}s", flush=True)
    for name in names:
        suite.stop(name)
    seconds = done - committed
    cpu.print_breakdown(meter, count, "renewal")
    return {
        "seconds": seconds,
        "per_s": count / seconds,
        "background": meter.background_cpus,
        "webhook_backlog": backlog,
        "cpu_ms": meter.per_unit_ms(count),
    }


def run() -> int:
    count = subscriptions_count()
    load = os.getloadavg()
    env = {"BILLING_JOBS_INTERVAL_SECONDS": str(JOBS_INTERVAL_S)}
    with Suite("renewals", extra_env=env) as suite:
        suite.start("gateway-api")
        one = measure(suite, count, 1, 1)
        two = measure(suite, count, 2, count + 1)
    section = {
        "subscriptions": count,
        "per_s": round(one["per_s"], 1),
        "per_s_two_workers": round(two["per_s"], 1),
        "seconds": round(one["seconds"], 2),
        "seconds_two_workers": round(two["seconds"], 2),
        "cpu_ms_per_renewal": one["cpu_ms"],
        "cpu_ms_per_renewal_two_workers": two["cpu_ms"],
        "webhook_backlog": one["webhook_backlog"],
        "webhook_backlog_two_workers": two["webhook_backlog"],
        "load_before": [round(x, 2) for x in load],
    }
    best = max(one["per_s"], two["per_s"])
    common.print_table(
        ["renewals", "subscriptions", "seconds", "per s", "other cpus", "target", ""],
        [
            [
                "1 billing-worker",
                count,
                one["seconds"],
                one["per_s"],
                one["background"],
                f"≥ {TARGET_PER_S:g}/s",
                common.mark(one["per_s"] >= TARGET_PER_S),
            ],
            [
                "2 billing-workers",
                count,
                two["seconds"],
                two["per_s"],
                two["background"],
                f"best {best:,.0f}/s",
                common.mark(best >= TARGET_PER_S),
            ],
        ],
        title=f"renewals: billing-worker, sandbox provider, one gateway-api · load {load[0]:.2f}",
    )
    path = common.write_results("renewals", section)
    print(f"\nwritten: {path.relative_to(common.ROOT)}")
    return 0


def main() -> None:
    common.run_main("renewals", run)


if __name__ == "__main__":
    main()
