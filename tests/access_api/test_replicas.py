"""Two real access-api processes and a real access-worker: a revoke reaches both within 1 s."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from uuid import uuid4

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from shared import clock, events
from shared.broker import Broker
from tests import support
from tests.access_api.conftest import service_headers, subscription

REVOKE_WITHIN = 1.0


@pytest.fixture
async def replicas(
    database_url: str, broker_prefix: str, tmp_path: Path
) -> AsyncIterator[list[str]]:
    env = support.suite_environment(database_url, broker_prefix)
    env["ACCESS_CACHE_TTL_SECONDS"] = "60"  # only the notification can evict in time
    cinema = str(Path(sys.executable).with_name("cinema"))
    ports = [support.free_port(), support.free_port()]
    commands = [[cinema, "access", "api", "--port", str(port)] for port in ports]
    commands.append([cinema, "access", "worker"])
    processes = []
    for index, command in enumerate(commands):
        log = open(tmp_path / f"process-{index}.log", "wb")  # noqa: SIM115
        processes.append(subprocess.Popen(command, env=env, stdout=log, stderr=log))
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            for url in urls:

                async def ready(url: str = url) -> bool:
                    try:
                        return (await client.get(f"{url}/health/ready")).status_code == 200
                    except httpx.TransportError:
                        return False

                await support.eventually(ready, timeout=60)
        yield urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(10)


async def publish(broker: Broker, payload: events.EventPayload) -> None:
    envelope = events.wrap(payload, producer="billing_api")
    await broker.publish(
        events.encode(envelope), routing_key=envelope.type, message_id=str(envelope.id)
    )


async def test_a_revoked_grant_stops_being_served_by_every_replica_within_a_second(
    replicas: list[str], broker: Broker, database_url: str
) -> None:
    user, plan, movie = uuid4(), uuid4(), uuid4()
    engine = create_async_engine(database_url)

    async def version() -> int:
        async with engine.connect() as conn:
            found = await conn.scalar(
                sa.text("SELECT version FROM access.user_grants WHERE user_id = :u"), {"u": user}
            )
        return int(found or 0)

    async def answers(client: httpx.AsyncClient) -> list[bool]:
        path = f"/api/v1/access/{user}/movies/{movie}"
        responses = await asyncio.gather(*(client.get(url + path) for url in replicas))
        return [bool(r.json()["allowed"]) for r in responses]

    try:
        async with httpx.AsyncClient(headers=service_headers(), timeout=2) as client:
            await publish(
                broker,
                events.PlanChanged(plan_id=plan, code="premium", version=1, all_movies=True),
            )
            await publish(
                broker,
                events.EntitlementsChanged(
                    user_id=user,
                    version=1,
                    grants=(subscription(plan, clock.now() + timedelta(days=30)),),
                ),
            )

            async def all_allowed() -> bool:
                return await answers(client) == [True, True]

            await support.eventually(all_allowed, timeout=20)  # and both caches are warm now

            await publish(broker, events.EntitlementsChanged(user_id=user, version=2))

            async def applied() -> bool:
                return await version() == 2

            await support.eventually(applied, timeout=10, interval=0.01)
            applied_at = time.monotonic()

            async def all_denied() -> bool:
                return await answers(client) == [False, False]

            await support.eventually(all_denied, timeout=5, interval=0.02)
            elapsed = time.monotonic() - applied_at
    finally:
        await engine.dispose()
    assert elapsed < REVOKE_WITHIN, f"revoke took {elapsed:.3f}s to reach every replica"
