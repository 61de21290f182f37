"""One purchase is one trace: the Procfile's processes, started with tracing on and pointed at a
local OTLP receiver, report the spans of a card checkout and its payment under one trace id, from
the checkout request through the gateway, the webhook that settles the payment and the events
to billing's worker and the access projection."""

from __future__ import annotations

import asyncio
import functools
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import uuid4

import httpx
import pytest

from shared import dbadmin
from shared.auth import AuthSettings, mint_user_token
from shared.broker import Broker
from tests import support
from tests.otlp import ReceivedSpan, Receiver, otlp_receiver

CINEMA = str(Path(sys.executable).with_name("cinema"))
GOOD_CARD = "4242424242424242"
SPAN_KIND_SERVER, SPAN_KIND_CONSUMER = 2, 5
READY_WITHIN = 120.0  # seven Python processes start at once on two cores


@dataclass
class Suite:
    billing: str
    gateway: str
    receiver: Receiver
    logs: Path


async def cinema(env: dict[str, str], *args: str) -> None:
    process = await asyncio.create_subprocess_exec(
        CINEMA, *args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    output, _ = await process.communicate()
    assert process.returncode == 0, f"cinema {' '.join(args)} failed:\n{output.decode()}"


async def ready(url: str) -> bool:
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            return (await client.get(f"{url}/health/ready")).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with otlp_receiver(support.free_port()) as receiver:
        yield receiver


@pytest.fixture(scope="module")
async def suite(
    receiver: Receiver, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Suite]:
    # Its own database: the demo catalog is loaded, which other tests count on not finding.
    database_url = support.fresh_database_url()
    await dbadmin.ensure_database(database_url)
    for service in support.SERVICES:
        await asyncio.to_thread(support.migrate, database_url, service)
    prefix = support.unique_prefix()
    logs = tmp_path_factory.mktemp("traced-logs")
    commands = support.procfile()
    ports = {name: support.free_port() for name, argv in commands.items() if "--port" in argv}
    billing, gateway = (
        f"http://127.0.0.1:{ports[name]}" for name in ("billing-api", "gateway-api")
    )
    env = support.suite_environment(database_url, prefix) | {
        "BILLING_GATEWAY_URL": gateway,
        "BILLING_PUBLIC_URL": billing,
        "GATEWAY_PUBLIC_URL": gateway,
        "ETL_BILLING_URL": billing,
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }
    env.pop("OTEL_SERVICE_NAME", None)
    env |= {f"{service}_DB_POOL_SIZE": "3" for service in support.ENV_PREFIXES}
    # The consumers' queues first, so the catalog's events and the payment's find them.
    for consumer in support.SERVICE_CONSUMERS:
        await cinema(env, consumer, "declare-queues")
    await cinema(env, "billing", "seed-demo")
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, argv in commands.items():
            argv = [CINEMA if part == "cinema" else part for part in argv]
            if name in ports:
                argv[argv.index("--port") + 1] = str(ports[name])
            with open(logs / f"{name}.log", "wb") as log:
                processes[name] = subprocess.Popen(argv, env=env, stdout=log, stderr=log)
        for port in ports.values():
            await support.eventually(
                functools.partial(ready, f"http://127.0.0.1:{port}"), timeout=READY_WITHIN
            )
        yield Suite(billing, gateway, receiver, logs)
    finally:
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            try:
                await asyncio.to_thread(process.wait, 15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        broker = Broker(support.AMQP_URL, prefix=prefix, client_name="tests-tracing-cleanup")
        await broker.connect()
        await support.delete_run_queues(broker)
        await support.delete_events_exchange(broker)
        await broker.close()
        await dbadmin.drop_database(database_url)


async def subscribe_and_pay(suite: Suite) -> str:
    """A card checkout for the basic plan, paid on the sandbox page; the subscription id."""
    user = uuid4()
    token = mint_user_token(AuthSettings(), user, email=f"{user.hex[:8]}@example.com")
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(timeout=30) as client:
        plans = (await client.get(f"{suite.billing}/api/v1/plans")).json()["items"]
        basic = next(plan for plan in plans if plan["code"] == "basic")
        created = await client.post(
            f"{suite.billing}/api/v1/subscriptions",
            json={"plan_id": basic["id"], "months": 1},
            headers=headers,
        )
        assert created.status_code == 201, created.text
        subscription = created.json()
        checkout = subscription["latest_payment"]["checkout_url"]
        session_id = checkout.rstrip("/").rsplit("/", 1)[-1]
        paid = await client.post(
            f"{suite.gateway}/sandbox/checkout/{session_id}/pay", json={"card_number": GOOD_CARD}
        )
        assert paid.status_code == 200, paid.text
        assert paid.json()["status"] == "succeeded", paid.text

        async def active() -> bool:
            answer = await client.get(
                f"{suite.billing}/api/v1/subscriptions/{subscription['id']}", headers=headers
            )
            return bool(answer.json()["status"] == "active")

        await support.eventually(active, timeout=60)
    return str(subscription["id"])


def checkout_trace(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
    """The spans of the trace the checkout request began."""
    checkout = next(
        span
        for span in spans
        if span.service == "billing-api"
        and span.kind == SPAN_KIND_SERVER
        and span.name == "POST /api/v1/subscriptions"
    )
    return [span for span in spans if span.trace_id == checkout.trace_id]


async def test_one_card_purchase_is_one_trace_from_checkout_to_access(suite: Suite) -> None:
    await subscribe_and_pay(suite)

    async def access_joined() -> bool:
        spans = suite.receiver.spans
        if not any(span.name == "POST /api/v1/subscriptions" for span in spans):
            return False
        return any(
            span.service == "access-worker" and span.kind == SPAN_KIND_CONSUMER
            for span in checkout_trace(spans)
        )

    try:
        await support.eventually(access_joined, timeout=60, interval=0.2)
    finally:
        print(sorted({(span.service, span.name) for span in checkout_trace(suite.receiver.spans)}))
    trace = checkout_trace(suite.receiver.spans)
    by_service = {span.service for span in trace}
    assert {"billing-api", "gateway-api", "billing-worker", "access-worker"} <= by_service
    names = {(span.service, span.name) for span in trace}
    # the gateway's webhook settles the payment inside the checkout's trace...
    assert ("gateway-api", "payment apply provider status") in names
    assert ("gateway-api", "payment.succeeded publish") in names
    # ...and billing's worker handles the result there, with its SQL
    assert ("billing-worker", "payment.succeeded process") in names
    assert any(span.service == "billing-worker" and span.kind == 3 for span in trace), names

    def roots() -> list[tuple[str, str]]:
        trace = checkout_trace(suite.receiver.spans)
        ids = {span.span_id for span in trace}
        return [(span.service, span.name) for span in trace if span.parent_span_id not in ids]

    async def only_the_checkout_is_a_root() -> bool:
        return roots() == [("billing-api", "POST /api/v1/subscriptions")]

    # every span but the first has its parent in the trace (once the last exports arrived)
    try:
        await support.eventually(only_the_checkout_is_a_root, timeout=10, interval=0.2)
    finally:
        print(roots())


async def test_log_lines_carry_the_trace_id(suite: Suite) -> None:
    await subscribe_and_pay(suite)
    trace_ids = {span.trace_id for span in suite.receiver.spans}
    logged = "".join((suite.logs / f"{name}.log").read_text() for name in support.procfile())
    assert any(f'"trace_id":"{trace_id}"' in logged for trace_id in trace_ids)
