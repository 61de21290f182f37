"""The processes of the Procfile (what ``make run`` starts) come up, work and stop cleanly."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from uuid import uuid4

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from tests import support

READY_WITHIN = 120.0  # seven Python processes start at once on two cores


class Suite:
    def __init__(
        self, processes: dict[str, subprocess.Popen[bytes]], ports: dict[str, int], logs: Path
    ) -> None:
        self.processes = processes
        self.ports = ports
        self.logs = logs

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text()


@pytest.fixture(scope="module")
async def suite(
    database_url: str, broker_prefix: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Suite]:
    logs = tmp_path_factory.mktemp("process-logs")
    cinema = str(Path(sys.executable).with_name("cinema"))
    processes: dict[str, subprocess.Popen[bytes]] = {}
    commands = support.procfile()
    ports = {name: support.free_port() for name, argv in commands.items() if "--port" in argv}
    env = support.suite_environment(database_url, broker_prefix)
    # The processes find each other on this run's ports, never a developer's suite on 8000-8003.
    billing, gateway = (
        f"http://127.0.0.1:{ports[name]}" for name in ("billing-api", "gateway-api")
    )
    env |= {
        "BILLING_GATEWAY_URL": gateway,
        "BILLING_PUBLIC_URL": billing,
        "GATEWAY_PUBLIC_URL": gateway,
        "ETL_BILLING_URL": billing,
    }
    for name, argv in commands.items():
        argv = [cinema if part == "cinema" else part for part in argv]
        if name in ports:
            argv[argv.index("--port") + 1] = str(ports[name])
        with open(logs / f"{name}.log", "wb") as log:
            processes[name] = subprocess.Popen(argv, env=env, stdout=log, stderr=log)
    yield Suite(processes, ports, logs)
    for process in processes.values():
        if process.poll() is None:
            process.kill()
            process.wait()


class TestStart:
    async def test_every_http_service_becomes_ready(self, suite: Suite) -> None:
        async def ready(client: httpx.AsyncClient, port: int) -> bool:
            try:
                response = await client.get(f"http://127.0.0.1:{port}/health/ready")
            except httpx.TransportError:
                return False
            return response.status_code == 200

        async with httpx.AsyncClient(timeout=2.0) as client:
            for name, port in suite.ports.items():

                async def this_one_ready(port: int = port) -> bool:
                    return await ready(client, port)

                await support.eventually(this_one_ready, timeout=READY_WITHIN)
                assert suite.processes[name].poll() is None, f"{name} exited"
        assert set(suite.ports) == {"billing-api", "gateway-api", "access-api", "notifier"}

    async def test_billing_worker_publishes_what_billing_commits(
        self, suite: Suite, database_url: str
    ) -> None:
        event_id = uuid4()
        engine = create_async_engine(database_url)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    sa.text(
                        "INSERT INTO billing.outbox (id, event_type, payload)"
                        " VALUES (:id, 'wallet.topped_up', :payload)"
                    ),
                    {"id": event_id, "payload": b'{"note": "published by the worker process"}'},
                )

            async def published() -> bool:
                async with engine.connect() as conn:
                    stamp = await conn.scalar(
                        sa.text("SELECT published_at FROM billing.outbox WHERE id = :id"),
                        {"id": event_id},
                    )
                return stamp is not None

            await support.eventually(published, timeout=READY_WITHIN)
        finally:
            await engine.dispose()


class TestStop:
    async def test_every_process_stops_cleanly_on_sigterm(self, suite: Suite) -> None:
        for process in suite.processes.values():
            process.send_signal(signal.SIGTERM)
        codes = {}
        for name, process in suite.processes.items():
            codes[name] = await asyncio.to_thread(process.wait, 20)
        # uvicorn re-raises SIGTERM after its graceful shutdown, so -SIGTERM is a clean exit too
        assert all(code in (0, -signal.SIGTERM) for code in codes.values()), codes
        for name in suite.processes:
            farewell = "Application shutdown complete" if name in suite.ports else "worker stopped"
            assert farewell in suite.log(name), f"{name} did not shut down gracefully"
            # a task of ours cancelled but never awaited (its cleanup ran after the broker closed)
            assert "Task exception was never retrieved" not in suite.log(name), name
