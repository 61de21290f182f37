"""The suite's real processes for a benchmark: a fresh database, a unique broker prefix.

``Suite`` creates a scratch database with every service's migrations, gives every process the
same broker prefix, starts the processes a benchmark asks for on free loopback ports and, on the
way out, stops them, drops the database and deletes what they declared on the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType

import aio_pika

from bench import common
from shared import dbadmin

SERVICES = ("billing_api", "payment_gateway", "access_api", "notifier", "etl")
ENV_PREFIXES = ("BILLING", "GATEWAY", "ACCESS", "NOTIFIER", "ETL", "CINEMA")
CONSUMERS = ("billing", "access", "notifier")
HTTP_PROCESSES = {
    "billing-api": ("billing", "api"),
    "gateway-api": ("gateway", "api"),
    "access-api": ("access", "api"),
    "notifier": ("notifier", "api"),
}
WORKERS = {
    "billing-worker": ("billing", "worker"),
    "access-worker": ("access", "worker"),
}

# One monthly plan covering every movie, written straight into billing's catalog.
PLAN_ID = "7d2f0a4e-0000-4000-8000-000000000001"
PLAN_SQL = f"""
INSERT INTO billing.plan (id, code, name, description, price_amount, currency, period_unit,
                          max_months, all_movies, grace_days, trial_days, refund_window_minutes,
                          refund_policy, active, version)
VALUES ('{PLAN_ID}', 'bench-monthly', 'Bench monthly', '', 29900, 'RUB', 'month', 12, true, 2, 0,
        60, 'window_then_prorata', true, 1)
"""


class Suite:
    """Processes of the suite on one scratch database; use as a context manager."""

    def __init__(self, name: str, *, extra_env: Mapping[str, str] | None = None) -> None:
        # A database of its own per run: two people benchmarking at once on a shared server must
        # not drop each other's (the finally blocks drop it; a killed run leaves it behind).
        run_id = uuid.uuid4().hex[:8]
        self.database_url = common.bench_database_url(f"cinema_bench_{name}_{run_id}")
        self.amqp_url = common.bench_amqp_url()
        self.prefix = common.unique_prefix(f"bench-{name}")
        self.ports = {process: common.free_port() for process in HTTP_PROCESSES}
        self.servers: dict[str, common.Server] = {}
        self.kinds: dict[str, str] = {}  # server name → the Procfile process it runs
        self.env = self._environment(extra_env or {})

    def _environment(self, extra: Mapping[str, str]) -> dict[str, str]:
        env = dict(os.environ)
        for prefix in ENV_PREFIXES:
            env[f"{prefix}_DATABASE_URL"] = self.database_url
            env[f"{prefix}_AMQP_URL"] = self.amqp_url
            env[f"{prefix}_BROKER_PREFIX"] = self.prefix
            env[f"{prefix}_LOG_LEVEL"] = "WARNING"
            # PostgreSQL is shared (max_connections 100): at most 10 connections per pool.
            env[f"{prefix}_DB_POOL_SIZE"] = os.environ.get("BENCH_DB_POOL_SIZE", "10")
        gateway = self.url("gateway-api")
        env["BILLING_GATEWAY_URL"] = gateway
        env["BILLING_PUBLIC_URL"] = self.url("billing-api")
        env["GATEWAY_PUBLIC_URL"] = gateway
        env["GATEWAY_PROVIDER"] = "sandbox"
        # A benchmark is one client sending thousands of payments: the limits against abuse
        # would measure themselves, not the suite.
        env["BILLING_RATE_LIMITS_ENABLED"] = "false"
        env["GATEWAY_RATE_LIMITS_ENABLED"] = "false"
        env["ETL_BILLING_URL"] = self.url("billing-api")
        env["LOG_LEVEL"] = "WARNING"
        env.update(extra)
        return env

    def url(self, process: str) -> str:
        return f"http://127.0.0.1:{self.ports[process]}"

    # --- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> Suite:
        started = time.monotonic()
        asyncio.run(dbadmin.drop_database(self.database_url))
        asyncio.run(dbadmin.ensure_database(self.database_url))
        for service in SERVICES:
            common.migrate(self.database_url, service)
        print(f"fresh database migrated in {time.monotonic() - started:.1f}s", flush=True)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all(keep_logs=exc is not None and not isinstance(exc, KeyboardInterrupt))
        try:
            asyncio.run(dbadmin.drop_database(self.database_url))
        except Exception as error:
            print(f"cleanup: dropping the bench database failed: {error}", file=sys.stderr)
        try:
            asyncio.run(delete_broker_names(self.amqp_url, self.prefix))
        except Exception as error:
            print(f"cleanup: removing broker names {self.prefix}* failed: {error}", file=sys.stderr)

    def start(self, process: str, *, workers: int = 1, name: str | None = None) -> common.Server:
        """Start one process of the Procfile (an API waits for ``/health/ready``)."""
        name = name or process
        self.kinds[name] = process
        if process in HTTP_PROCESSES:
            args = [
                *HTTP_PROCESSES[process],
                "--host",
                "127.0.0.1",
                "--port",
                str(self.ports[process]),
            ]
            if workers > 1:
                args += ["--workers", str(workers)]
            server = common.Server(
                common.cinema_command(*args),
                port=self.ports[process],
                env=self.env,
                name=name,
                workers=workers,
            )
            self.servers[name] = server
            server.start()
        else:
            server = common.Server(
                common.cinema_command(*WORKERS[process]), port=0, env=self.env, name=name
            )
            self.servers[name] = server
            server.spawn()
        return server

    def stop(self, name: str) -> None:
        server = self.servers.pop(name, None)
        if server is not None:
            server.stop()

    def stop_all(self, *, keep_logs: bool = False) -> None:
        for name in list(self.servers):
            server = self.servers.pop(name)
            if keep_logs:
                print(f"log of {name}: {server.log_path}", file=sys.stderr)
            try:
                server.stop(keep_log=keep_logs)
            except Exception as error:
                print(f"cleanup: stopping {name} failed: {error}", file=sys.stderr)

    def check_alive(self) -> None:
        for name, server in self.servers.items():
            if not server.alive():
                raise common.BenchFailed(f"{name} died:\n{server.log_tail()}")

    def roots(self) -> dict[str, list[int]]:
        """The process each running server started, grouped by what it runs (two billing-workers
        are one group)."""
        groups: dict[str, list[int]] = {}
        for name, server in self.servers.items():
            if server.process is not None:
                groups.setdefault(self.kinds[name], []).append(server.process.pid)
        return groups

    def python_pids(self) -> dict[str, list[int]]:
        """Each running server's Python processes that do the work (uvicorn's workers)."""
        return {name: server.worker_pids() for name, server in self.servers.items()}

    @property
    def database_name(self) -> str:
        return self.database_url.rsplit("/", 1)[-1]

    def pids(self) -> list[int]:
        pids = [pid for server in self.servers.values() for pid in server.pids()]
        db_name = self.database_url.rsplit("/", 1)[-1]
        return [*pids, *common.pids_with_cmdline(f" {db_name} ")]

    # --- one-shot commands -----------------------------------------------------------------------

    def run(self, *args: str, timeout_s: float = 600.0) -> subprocess.CompletedProcess[str]:
        """``cinema …`` to completion with the suite's environment."""
        done = subprocess.run(
            common.cinema_command(*args),
            cwd=common.ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        if done.returncode != 0:
            raise common.BenchFailed(
                f"cinema {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}"
            )
        return done

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            common.cinema_command(*args),
            cwd=common.ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    async def wait_consumers(
        self, consumers: Sequence[str], *, at_least: int = 1, timeout_s: float = 60.0
    ) -> None:
        """Until each consumer's main queue exists and has ``at_least`` consumers on it."""
        connection = await aio_pika.connect(self.amqp_url)
        try:
            deadline = time.monotonic() + timeout_s
            for consumer in consumers:
                name = f"{self.prefix}{consumer}"
                while True:
                    channel = await connection.channel()
                    try:
                        queue = await channel.declare_queue(name, passive=True)
                        if (queue.declaration_result.consumer_count or 0) >= at_least:
                            break
                    except aio_pika.exceptions.ChannelClosed:
                        pass
                    finally:
                        with contextlib.suppress(Exception):
                            await channel.close()
                    if time.monotonic() > deadline:
                        raise common.BenchFailed(f"no consumer on {name} after {timeout_s:.0f}s")
                    self.check_alive()
                    await asyncio.sleep(0.2)
        finally:
            await connection.close()

    async def queue_depth(self, consumer: str) -> int:
        """Messages ready in a consumer's main queue (0 when it does not exist)."""
        connection = await aio_pika.connect(self.amqp_url)
        try:
            channel = await connection.channel()
            try:
                queue = await channel.declare_queue(f"{self.prefix}{consumer}", passive=True)
            except aio_pika.exceptions.ChannelClosed:
                return 0
            return queue.declaration_result.message_count or 0
        finally:
            await connection.close()


async def delete_broker_names(amqp_url: str, prefix: str) -> None:
    """The events exchanges and every consumer's queues declared under ``prefix``."""
    await common.delete_broker_names(amqp_url, prefix)
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        for consumer in CONSUMERS:
            main = f"{prefix}{consumer}"
            for name in (main, f"{main}.dead", *(f"{main}.retry.{n}" for n in range(10))):
                await channel.queue_delete(name)
        await channel.close()
    finally:
        await connection.close()


@contextlib.contextmanager
def timed(label: str) -> Iterator[None]:
    started = time.monotonic()
    yield
    print(f"{label}: {time.monotonic() - started:.1f}s", flush=True)
