"""``make bench-checkout``: latency of ``POST /api/v1/subscriptions`` (a card checkout).

billing-api and gateway-api (sandbox provider) on a fresh database with one plan. wrk sends
checkouts one at a time (the latency of one checkout: the section's p50/p95), then from
``CONNECTIONS`` connections (what queueing adds, under ``c8``); every request is by another user,
so each one does the whole work: quote, pending subscription and payment, the gateway's sandbox
session. Each run has a warm-up first. Target p95 ≤ 50 ms.

    python -m bench.checkout        # BENCH_SECONDS=10 by default
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import tempfile
import uuid
from pathlib import Path

import asyncpg
import httpx

from bench import common
from bench.suite import PLAN_ID, PLAN_SQL, Suite
from shared.auth import AuthSettings, mint_user_token

CONNECTIONS = 8
THREADS = 2
WARMUP_SECONDS = 5
USERS = 12_000  # more than a run sends: every request is a new user's first checkout
TARGET_P95_MS = 50.0

LUA = """
local requests = {requests}
local threads = {{}}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("offset", counter)
  table.insert(threads, thread)
end

function init(args)
  index = offset
end

function request()
  local body = requests[index]
  index = index + {threads}
  if index > #requests then index = offset end
  return wrk.format("POST", "/api/v1/subscriptions",
    {{["Authorization"] = "Bearer " .. body[1], ["Content-Type"] = "application/json"}},
    body[2])
end

function done(summary, latency, requests)
  io.write(string.format("P95_US %d\\n", latency:percentile(95)))
end
"""


def write_script(directory: Path, first_user: int, threads: int) -> Path:
    auth = AuthSettings()
    body = json.dumps({"plan_id": PLAN_ID, "months": 1})
    entries = []
    for n in range(first_user, first_user + USERS):
        user = uuid.uuid5(uuid.NAMESPACE_URL, f"bench-checkout-{n}")
        token = mint_user_token(auth, user, email=f"u{n}@bench.local", ttl_seconds=3600)
        entries.append("{" + common.lua_string(token) + "," + common.lua_string(body) + "}")
    path = directory / f"checkout-{first_user}.lua"
    path.write_text(LUA.format(requests="{" + ",\n".join(entries) + "}", threads=threads))
    return path


def p95_ms(output: str) -> float:
    match = re.search(r"^P95_US (\d+)", output, re.M)
    if match is None:
        raise common.BenchFailed(f"no p95 in wrk's output:\n{output}")
    return int(match.group(1)) / 1000.0


async def seed(database_url: str) -> None:
    conn = await asyncpg.connect(common.asyncpg_dsn(database_url))
    try:
        await conn.execute(PLAN_SQL)
    finally:
        await conn.close()


def preflight(base_url: str) -> None:
    token = mint_user_token(AuthSettings(), uuid.uuid4(), email="pre@bench.local")
    answer = httpx.post(
        base_url + "/api/v1/subscriptions",
        json={"plan_id": PLAN_ID},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    if answer.status_code != 201 or not answer.json()["latest_payment"]["checkout_url"]:
        raise common.BenchFailed(f"checkout: {answer.status_code} {answer.text[:500]}")


def run() -> int:
    seconds = common.bench_seconds()
    common.ensure_wrk()
    load = os.getloadavg()
    results: dict[int, tuple[common.WrkResult, float, float]] = {}
    with Suite("checkout") as suite, tempfile.TemporaryDirectory(prefix="bench-checkout-") as tmp:
        asyncio.run(seed(suite.database_url))
        suite.start("gateway-api")
        billing = suite.start("billing-api")
        preflight(billing.base_url)
        first_user = 1
        for connections in (1, CONNECTIONS):
            threads = min(THREADS, connections)
            warmup = write_script(Path(tmp), first_user, threads)
            measured = write_script(Path(tmp), first_user + USERS, threads)
            first_user += 2 * USERS
            print(f"wrk warm-up: {WARMUP_SECONDS}s, {connections} connection(s) …", flush=True)
            common.run_wrk(
                billing.base_url + "/",
                seconds=WARMUP_SECONDS,
                connections=connections,
                threads=threads,
                script=warmup,
                timeout_s=5,
            )
            print(f"wrk checkout: {seconds}s, {connections} connection(s) …", flush=True)
            with common.CpuMeter(suite.pids) as meter:
                result = common.run_wrk(
                    billing.base_url + "/",
                    seconds=seconds,
                    connections=connections,
                    threads=threads,
                    script=measured,
                    timeout_s=5,
                )
            suite.check_alive()
            if result.requests > USERS:
                print(f"note: {result.requests:,} requests > {USERS:,} users: some were repeats")
            results[connections] = (result, p95_ms(result.output), meter.background_cpus)
    single, single_p95, _ = results[1]
    loaded, loaded_p95, _ = results[CONNECTIONS]
    section = {
        "p50_ms": round(single.p50_ms, 2),
        "p95_ms": round(single_p95, 2),
        "p99_ms": round(single.p99_ms, 2),
        "rps": round(single.rps, 1),
        "connections": 1,
        f"c{CONNECTIONS}": {
            "p50_ms": round(loaded.p50_ms, 2),
            "p95_ms": round(loaded_p95, 2),
            "p99_ms": round(loaded.p99_ms, 2),
            "rps": round(loaded.rps, 1),
        },
        "seconds": seconds,
        "load_before": [round(x, 2) for x in load],
    }
    rows = [
        [
            f"{connections} connection(s)",
            result.rps,
            result.p50_ms,
            p95,
            result.p99_ms,
            background,
            f"p95 ≤ {TARGET_P95_MS:g} ms",
            common.mark(p95 <= TARGET_P95_MS),
        ]
        for connections, (result, p95, background) in results.items()
    ]
    common.print_table(
        ["checkout", "rps", "p50 ms", "p95 ms", "p99 ms", "other cpus", "target", ""],
        rows,
        title=(
            f"checkout: POST /api/v1/subscriptions, billing-api + gateway-api (sandbox),"
            f" {seconds}s each · load {load[0]:.2f}"
        ),
    )
    path = common.write_results("checkout", section)
    print(f"\nwritten: {path.relative_to(common.ROOT)}")
    return 0


def main() -> None:
    common.run_main("checkout", run)


if __name__ == "__main__":
    main()
