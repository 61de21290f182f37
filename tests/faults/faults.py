"""The faults, each an async function run beside the workload; each returns what it observed
about the system's behaviour while it lasted (and raises if that behaviour was wrong).

Every fault is short and always undone in a ``finally``: RabbitMQ is shared with other work on
the machine, and PostgreSQL backends are only ever ours (this run's database, our services'
``application_name``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.auth import AuthSettings, mint_user_token
from tests import support
from tests.faults.harness import System

Fault = Callable[[System, AsyncEngine], Coroutine[Any, Any, dict[str, Any]]]
SERVICES = ["billing_api", "payment_gateway", "access_api", "notifier", "etl"]
# Every pool of ours: the services' own, their outbox relays', the sandbox's, the access cache's,
# the gateway's provider call journal's.
OUR_SERVICES = [
    *SERVICES,
    *(f"{service}-relay" for service in SERVICES),
    "sandbox",
    "payment_gateway-calls",
    "access_api-cache",
]
RECOVER_WITHIN = 90.0


async def _status(url: str, *, headers: dict[str, str] | None = None) -> int:
    """An answer's status within 10 s, 0 for a transport error; a hang fails the run."""
    async with httpx.AsyncClient(timeout=10.0) as client:
        try:
            return (await client.get(url, headers=headers)).status_code
        except httpx.TimeoutException as exc:
            raise AssertionError(f"{url} hung while a dependency was down") from exc
        except httpx.TransportError:
            return 0


async def _recovers(url: str) -> float:
    started = time.monotonic()

    async def ready() -> bool:
        return await _status(f"{url}/health/ready") == 200

    await support.eventually(ready, timeout=RECOVER_WITHIN, interval=0.5)
    return round(time.monotonic() - started, 1)


async def _rabbitmqctl(*args: str) -> None:
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl", *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(60):
        _, err = await process.communicate()
    assert process.returncode == 0, f"rabbitmqctl {' '.join(args)}: {err.decode()}"


async def rabbitmq_restart(system: System, engine: AsyncEngine) -> dict[str, Any]:
    """``stop_app`` for a few seconds mid-run; the APIs keep taking orders (outbox), ready=503."""
    await asyncio.sleep(2.0)
    billing = system.url("billing-api")
    seen: dict[str, Any] = {}
    try:
        await _rabbitmqctl("stop_app")
        deadline = time.monotonic() + 4.0

        async def not_ready() -> bool:
            return await _status(f"{billing}/health/ready") == 503

        with contextlib.suppress(TimeoutError):
            await support.eventually(not_ready, timeout=3.0, interval=0.2)
        seen["ready during outage"] = await _status(f"{billing}/health/ready")
        seen["plans during outage"] = await _status(f"{billing}/api/v1/plans")
        await asyncio.sleep(max(0.0, deadline - time.monotonic()))
    finally:
        await _rabbitmqctl("start_app")
    seen["ready again after s"] = await _recovers(billing)
    assert seen["ready during outage"] == 503, seen
    assert seen["plans during outage"] == 200, seen
    return seen


async def postgres_kill(system: System, engine: AsyncEngine) -> dict[str, Any]:
    """``pg_terminate_backend`` on every backend of our services in this run's database,
    again and again for a few seconds, so transactions die at every stage."""
    await asyncio.sleep(1.5)
    killed = 0
    for _ in range(8):
        async with engine.connect() as conn:
            killed += int(
                await conn.scalar(
                    sa.text(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                        " WHERE datname = :db AND application_name = ANY(:apps)"
                        " AND pid <> pg_backend_pid()"
                    ),
                    {"db": system.database_name, "apps": OUR_SERVICES},
                )
                or 0
            )
        await asyncio.sleep(0.7)
    return {
        "backends terminated": killed,
        "ready again after s": await _recovers(system.url("billing-api")),
    }


KILLED = (("billing-worker", "a"), ("gateway-api", "a"), ("access-worker", "a"))


async def sigkill_processes(system: System, engine: AsyncEngine) -> dict[str, Any]:
    """SIGKILL a billing worker, a gateway and an access worker mid-batch; restart them; then the
    other replicas of the workers the same way."""
    await asyncio.sleep(2.0)
    rounds = (KILLED, (("billing-worker", "b"), ("access-worker", "b")))
    for victims in rounds:
        for name, replica in victims:
            system.kill(f"{name}-{replica}")
        await asyncio.sleep(2.0)
        for name, replica in victims:
            system.start(name, replica)
        await asyncio.sleep(3.0)
    await system.ready(timeout=RECOVER_WITHIN)
    return {"processes killed": sum(len(v) for v in rounds)}


async def proxy_faults(system: System, engine: AsyncEngine) -> dict[str, Any]:
    """Latency on the -b replicas' links to PostgreSQL and RabbitMQ, connections dropped, then
    PostgreSQL cut off for a few seconds: billing-api-b answers 503 meanwhile, then recovers."""
    pg, amqp = system.pg_proxy, system.amqp_proxy
    billing_b = system.url("billing-api", "b")
    token = mint_user_token(AuthSettings(), __import__("uuid").uuid4(), email="probe@example.com")
    headers = {"Authorization": f"Bearer {token}"}
    seen: dict[str, Any] = {}
    try:
        pg.latency = amqp.latency = 0.02
        for _ in range(3):
            await asyncio.sleep(1.5)
            pg.drop_all()
            amqp.drop_all()
        pg.refusing = True
        pg.drop_all()
        await asyncio.sleep(0.5)
        seen["api while db cut"] = await _status(
            f"{billing_b}/api/v1/subscriptions", headers=headers
        )
        seen["ready while db cut"] = await _status(f"{billing_b}/health/ready")
        await asyncio.sleep(2.5)
    finally:
        pg.refusing = False
        pg.latency = amqp.latency = 0.0
    seen["ready again after s"] = await _recovers(billing_b)
    seen["connections dropped"] = pg.dropped + amqp.dropped
    assert seen["api while db cut"] == 503, seen
    assert seen["ready while db cut"] == 503, seen
    return seen


FAULTS: dict[str, Fault] = {
    "rabbitmq stop_app/start_app": rabbitmq_restart,
    "postgres backends terminated": postgres_kill,
    "SIGKILL workers and gateway": sigkill_processes,
    "proxy latency, drops, db cut": proxy_faults,
}
