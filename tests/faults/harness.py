"""The real processes, two replicas of each, and the stand-ins around them.

* every worker and API of the Procfile runs twice (``-a`` and ``-b``); the ``-b`` replicas of
  billing and access reach PostgreSQL and RabbitMQ through :class:`TcpProxy` pairs, so a test can
  slow or cut their links while the ``-a`` replicas keep working;
* the sandbox's webhooks go to :class:`WebhookRelay`, which delivers each one three times, to
  either gateway replica, after random delays (duplicated and shuffled);
* with ``provider="yookassa"`` the gateways take payments from :class:`NotifyingStandin` (the
  YooKassa stand-in served over HTTP in the test process), whose notifications go through the
  same relay (each three times, shuffled, the first retried until a gateway takes it);
* the notifier sends its email to :class:`MailSink` (aiosmtpd on a free port).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from email import message_from_bytes
from pathlib import Path
from typing import Any

import httpx
from aiosmtpd.controller import Controller
from sqlalchemy.engine import make_url
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests import support
from tests.faults.proxy import TcpProxy
from tests.faults.yookassa import NotifyingStandin, yookassa_environment

CINEMA = str(Path(sys.executable).with_name("cinema"))
REPLICAS = ("a", "b")
HTTP_PROCESSES = ("billing-api", "gateway-api", "access-api", "notifier")
WORKERS = ("billing-worker", "access-worker")
# The -b replicas of these reach PostgreSQL and RabbitMQ through the proxies.
PROXIED = ("billing-api", "billing-worker", "access-api", "access-worker")
READY_WITHIN = 150.0


class MailSink:
    """An aiosmtpd handler that counts messages by ``Message-ID`` (the notification id)."""

    def __init__(self) -> None:
        self.message_ids: Counter[str] = Counter()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        message = message_from_bytes(envelope.content)
        self.message_ids[str(message["Message-ID"]).strip("<>").split("@")[0]] += 1
        return "250 OK"


@dataclass
class WebhookRelay:
    """Receives the sandbox's signed webhooks (or is handed YooKassa's notifications) and
    delivers each three times, shuffled."""

    gateways: list[str]
    path: str = "/webhooks/sandbox"
    copies: int = 3
    received: int = 0
    delivered: int = 0
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    http: httpx.AsyncClient = field(default_factory=lambda: httpx.AsyncClient(timeout=10.0))

    def app(self) -> Starlette:
        return Starlette(routes=[Route(self.path, self.receive, methods=["POST"])])

    def push(self, body: bytes, headers: dict[str, str]) -> None:
        """A notification the provider sends on its own (YooKassa): like YooKassa, the first
        copy is sent again until a gateway takes it; the others are duplicates."""
        self.received += 1
        self._spawn(self._until_taken(body, headers))
        for _ in range(self.copies - 1):
            self._spawn(self._later(body, headers, random.uniform(0.0, 2.0)))

    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _until_taken(self, body: bytes, headers: dict[str, str]) -> None:
        for _ in range(120):
            if await self._deliver(body, headers) < 300:
                return
            await asyncio.sleep(1.0)

    async def receive(self, request: Request) -> Response:
        body = await request.body()
        headers = {
            k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")
        }
        self.received += 1
        # The first copy is delivered now and its answer is the sender's: a webhook the gateway
        # did not take is retried by the sandbox, never lost here.
        status = await self._deliver(body, headers)
        for _ in range(self.copies - 1):
            self._spawn(self._later(body, headers, random.uniform(0.0, 2.0)))
        return Response(status_code=status)

    async def _later(self, body: bytes, headers: dict[str, str], delay: float) -> None:
        await asyncio.sleep(delay)
        await self._deliver(body, headers)

    async def _deliver(self, body: bytes, headers: dict[str, str]) -> int:
        for gateway in random.sample(self.gateways, len(self.gateways)):
            try:
                response = await self.http.post(
                    f"{gateway}{self.path}", content=body, headers=headers
                )
            except httpx.TransportError:
                continue
            if response.is_success:
                self.delivered += 1
                return response.status_code
        return 503

    async def idle(self) -> None:
        while self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)


class CommandFailed(Exception):
    pass


@dataclass
class System:
    database_url: str
    broker_prefix: str
    logs: Path
    env: dict[str, str]
    ports: dict[str, int]
    processes: dict[str, subprocess.Popen[bytes]]
    relay: WebhookRelay
    mail: MailSink
    pg_proxy: TcpProxy
    amqp_proxy: TcpProxy
    standin: NotifyingStandin | None = None  # YooKassa's, when it is the provider

    def url(self, name: str, replica: str = "a") -> str:
        return f"http://127.0.0.1:{self.ports[f'{name}-{replica}']}"

    def urls(self, name: str) -> list[str]:
        return [self.url(name, replica) for replica in REPLICAS]

    @property
    def database_name(self) -> str:
        return str(make_url(self.database_url).database)

    def environment(self, name: str, replica: str) -> dict[str, str]:
        env = dict(self.env)
        if replica == "b" and name in PROXIED:
            base = make_url(self.database_url)
            proxied_db = base.set(host="127.0.0.1", port=self.pg_proxy.port)
            amqp = support.AMQP_URL.replace(
                _host_port(support.AMQP_URL), f"127.0.0.1:{self.amqp_proxy.port}"
            )
            for prefix in support.ENV_PREFIXES:
                env[f"{prefix}_DATABASE_URL"] = proxied_db.render_as_string(hide_password=False)
                env[f"{prefix}_AMQP_URL"] = amqp
        # Each billing replica talks to its own gateway replica.
        env["BILLING_GATEWAY_URL"] = self.url("gateway-api", replica)
        return env

    def start(self, name: str, replica: str) -> None:
        argv = [CINEMA if part == "cinema" else part for part in support.procfile()[name]]
        key = f"{name}-{replica}"
        if key in self.ports:
            argv[argv.index("--port") + 1] = str(self.ports[key])
        with open(self.logs / f"{key}.log", "ab") as log:
            self.processes[key] = subprocess.Popen(
                argv, env=self.environment(name, replica), stdout=log, stderr=log
            )

    def kill(self, key: str) -> None:
        process = self.processes[key]
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(10)

    async def ready(self, timeout: float = READY_WITHIN) -> None:
        async with httpx.AsyncClient(timeout=3.0) as client:
            for port in self.ports.values():

                async def up(port: int = port) -> bool:
                    for key, process in self.processes.items():
                        assert process.poll() is None, f"{key} exited:\n{self.log_tail(key)}"
                    try:
                        response = await client.get(f"http://127.0.0.1:{port}/health/ready")
                    except httpx.TransportError:
                        return False
                    return response.status_code == 200

                await support.eventually(up, timeout=timeout, interval=0.5)
        for key, process in self.processes.items():
            assert process.poll() is None, f"{key} exited:\n{self.log_tail(key)}"

    async def cinema(self, *args: str, timeout: float = 90.0) -> str:
        process = await asyncio.create_subprocess_exec(
            CINEMA,
            *args,
            env=self.environment("billing-worker", "a"),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            async with asyncio.timeout(timeout):
                output, _ = await process.communicate()
        except TimeoutError:
            process.kill()
            await process.wait()
            raise
        text = output.decode(errors="replace")
        if process.returncode != 0:
            raise CommandFailed(f"cinema {' '.join(args)} failed:\n{text[-2000:]}")
        return text

    def log_tail(self, key: str, lines: int = 20) -> str:
        path = self.logs / f"{key}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def _host_port(url: str) -> str:
    parsed = httpx.URL(url)
    return f"{parsed.host}:{parsed.port or 5672}"


@contextlib.asynccontextmanager
async def running_system(
    database_url: str, broker_prefix: str, logs: Path, provider: str = "sandbox"
) -> AsyncIterator[System]:
    """Every process twice, the relay, the mail sink and the proxies; all stopped at the end.

    ``provider`` is the gateways' payment provider: ``sandbox`` or ``yookassa`` (the stand-in)."""
    pg = make_url(database_url)
    amqp = httpx.URL(support.AMQP_URL)
    mail = MailSink()
    smtp_port = support.free_port()
    controller = Controller(mail, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    ports = {
        f"{name}-{replica}": support.free_port() for name in HTTP_PROCESSES for replica in REPLICAS
    }
    gateways = [f"http://127.0.0.1:{ports[f'gateway-api-{r}']}" for r in REPLICAS]
    relay = WebhookRelay(gateways, path=f"/webhooks/{provider}")
    standin = (
        NotifyingStandin(relay.push, asyncio.get_running_loop()) if provider == "yookassa" else None
    )
    relay_port = support.free_port()
    env = support.suite_environment(database_url, broker_prefix)
    billing_a = f"http://127.0.0.1:{ports['billing-api-a']}"
    env |= {
        "BILLING_PUBLIC_URL": billing_a,
        "GATEWAY_PUBLIC_URL": gateways[0],
        "GATEWAY_SANDBOX_WEBHOOK_URL": f"http://127.0.0.1:{relay_port}/webhooks/sandbox",
        "NOTIFIER_SMTP_HOST": "127.0.0.1",
        "NOTIFIER_SMTP_PORT": str(smtp_port),
        "NOTIFIER_RETRY_DELAYS_SECONDS": "0.5,1,2",
        "NOTIFIER_MAX_ATTEMPTS": "20",
        "NOTIFIER_SENDER_INTERVAL_SECONDS": "0.5",
        "CINEMA_LOG_LEVEL": "WARNING",
        # The workload is one client paying as fast as it can: the limits against abuse off.
        "BILLING_RATE_LIMITS_ENABLED": "false",
        "GATEWAY_RATE_LIMITS_ENABLED": "false",
    }
    if standin is not None:
        env |= yookassa_environment(standin)
    for prefix in support.ENV_PREFIXES:
        env[f"{prefix}_LOG_LEVEL"] = "WARNING"
        # PostgreSQL's 100 connections are shared by twelve processes here (and other work).
        env[f"{prefix}_DB_POOL_SIZE"] = "2"
    try:
        async with (
            TcpProxy(str(pg.host or "127.0.0.1"), int(pg.port or 5432)) as pg_proxy,
            TcpProxy(str(amqp.host), int(amqp.port or 5672)) as amqp_proxy,
            support.served(relay.app(), relay_port),
            contextlib.AsyncExitStack() as stack,
        ):
            if standin is not None:
                stack.enter_context(standin)
            system = System(
                database_url,
                broker_prefix,
                logs,
                env,
                ports,
                {},
                relay,
                mail,
                pg_proxy,
                amqp_proxy,
                standin,
            )
            try:
                for name in (*HTTP_PROCESSES, *WORKERS):
                    for replica in REPLICAS:
                        system.start(name, replica)
                await system.ready()
                yield system
            finally:
                for key in list(system.processes):
                    process = system.processes[key]
                    if process.poll() is None:
                        process.terminate()
                for process in system.processes.values():
                    try:
                        await asyncio.to_thread(process.wait, 15)
                    except subprocess.TimeoutExpired:
                        process.kill()
                        process.wait()
                await relay.idle()
                await relay.http.aclose()
    finally:
        controller.stop()
