"""``make bench-checkout``: latency of ``POST /api/v1/subscriptions`` (a card checkout).

billing-api and gateway-api (sandbox provider) on a fresh database with one plan. wrk sends
checkouts at a modest concurrency (``CONNECTIONS``), every request by another user, so each one
does the whole work: quote, pending subscription and payment, the gateway's sandbox session.
A warm-up run comes first. Target p95 ≤ 50 ms.

    python -m bench.checkout        # BENCH_SECONDS=10 by default
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import tempfile
import uuid
from pathlib import Path

import asyncpg
import httpx

from bench import common
from bench.suite import PLAN_ID, PLAN_SQL, Suite
from shared import dbadmin
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


def write_script(directory: Path, first_user: int) -> Path:
    auth = AuthSettings()
    body = json.dumps({"plan_id": PLAN_ID, "months": 1})
    entries = []
    for n in range(first_user, first_user + USERS):
        user = uuid.uuid5(uuid.NAMESPACE_URL, f"bench-checkout-{n}")
        token = mint_user_token(auth, user, email=f"u{n}@bench.local", ttl_seconds=3600)
        entries.append("{" + common.lua_string(token) + "," + common.lua_string(body) + "}")
    path = directory / f"checkout-{first_user}.lua"
    path.write_text(LUA.format(requests="{" + ",\n".join(entries) + "}", threads=THREADS))
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
    with Suite("checkout") as suite, tempfile.TemporaryDirectory(prefix="bench-checkout-") as tmp:
        asyncio.run(seed(suite.database_url))
        suite.start("gateway-api")
        billing = suite.start("billing-api")
        preflight(billing.base_url)
        warmup = write_script(Path(tmp), 1)
        measured = write_script(Path(tmp), 1 + USERS)
        print(f"wrk warm-up: {WARMUP_SECONDS}s, {CONNECTIONS} connections …", flush=True)
        common.run_wrk(
            billing.base_url + "/",
            seconds=WARMUP_SECONDS,
            connections=CONNECTIONS,
            threads=THREADS,
            script=warmup,
            timeout_s=5,
        )
        print(f"wrk checkout: {seconds}s, {CONNECTIONS} connections …", flush=True)
        with common.CpuMeter(suite.pids) as meter:
            result = common.run_wrk(
                billing.base_url + "/",
                seconds=seconds,
                connections=CONNECTIONS,
                threads=THREADS,
                script=measured,
                timeout_s=5,
            )
        suite.check_alive()
    p95 = p95_ms(result.output)
    if result.requests > USERS:
        print(f"note: {result.requests:,} requests > {USERS:,} users: some were repeats")
    section = {
        "p50_ms": round(result.p50_ms, 2),
        "p95_ms": round(p95, 2),
        "p99_ms": round(result.p99_ms, 2),
        "rps": round(result.rps, 1),
        "connections": CONNECTIONS,
        "seconds": seconds,
        "load_before": [round(x, 2) for x in load],
    }
    common.print_table(
        ["checkout", "rps", "p50 ms", "p95 ms", "p99 ms", "other cpus", "target", ""],
        [
            [
                "POST /subscriptions",
                result.rps,
                result.p50_ms,
                p95,
                result.p99_ms,
                meter.background_cpus,
                f"p95 ≤ {TARGET_P95_MS:g} ms",
                common.mark(p95 <= TARGET_P95_MS),
            ]
        ],
        title=(
            f"checkout: billing-api + gateway-api (sandbox), {CONNECTIONS} connections,"
            f" {seconds}s · load {load[0]:.2f}"
        ),
    )
    path = common.write_results("checkout", section)
    print(f"\nwritten: {path.relative_to(common.ROOT)}")
    return 0


def main() -> None:
    common.stop_on_sigterm()
    try:
        code = run()
    except (common.BenchFailed, dbadmin.DependencyMissing) as exc:
        print(f"bench-checkout: {exc}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        print("bench-checkout: interrupted", file=sys.stderr)
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
