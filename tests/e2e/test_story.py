"""The whole story across real processes: every process of the Procfile on free ports, a scratch
database and broker prefix, a real SMTP server and an auth stand-in, driven through the API
clients generated from the services' own OpenAPI documents (the same story ``make demo`` tells).

The story gets a database and a broker prefix of its own: it loads the demo catalog and redeems
the demo promo code, which other tests count on finding untouched.
"""

from __future__ import annotations

import asyncio
import functools
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from demo import clients
from demo.story import FAILS_LATER_CARD, GOOD_CARD, Story
from shared import dbadmin
from shared.broker import Broker
from tests import support
from tests.e2e.standins import AuthStandIn, Mailbox, smtp_server

CINEMA = str(Path(sys.executable).with_name("cinema"))
HTTP = {
    "billing-api": "billing",
    "gateway-api": "gateway",
    "access-api": "access",
    "notifier": "notifier",
}


@dataclass
class Suite:
    urls: dict[str, str]
    env: dict[str, str]
    source_url: str
    logs: Path
    mailbox: Mailbox
    auth: AuthStandIn

    def log_tails(self) -> str:
        return "\n".join(
            f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-15:])
            for log in sorted(self.logs.glob("*.log"))
        )


async def cinema(env: dict[str, str], *args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        CINEMA, *args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    output, _ = await process.communicate()
    text = output.decode(errors="replace")
    assert process.returncode == 0, f"cinema {' '.join(args)} failed:\n{text}"
    return text


async def ready(url: str) -> bool:
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            return (await client.get(f"{url}/health/ready")).status_code == 200
    except httpx.TransportError:
        return False


async def consuming(broker: Broker, queue: str) -> bool:
    channel = await broker.channel()
    try:
        declared = await channel.declare_queue(queue, passive=True)
    except Exception:
        return False
    finally:
        if not channel.is_closed:
            await channel.close()
    return bool(declared.declaration_result.consumer_count)


@pytest.fixture(scope="module")
async def suite(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Suite]:
    database_url = support.fresh_database_url()
    await dbadmin.ensure_database(database_url)
    for service in support.SERVICES:
        await asyncio.to_thread(support.migrate, database_url, service)
    source_url = support.fresh_database_url()  # the movie admin's database, for the ETL
    prefix = support.unique_prefix()
    logs = support.ARTIFACTS / "e2e-logs"
    logs.mkdir(parents=True, exist_ok=True)
    for old in logs.glob("*.log"):
        old.unlink()

    ports = {name: support.free_port() for name in HTTP}
    urls = {HTTP[name]: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    smtp_port, auth_port = support.free_port(), support.free_port()
    controller, mailbox = smtp_server(smtp_port)
    auth = AuthStandIn()
    env = support.suite_environment(database_url, prefix) | {
        "BILLING_GATEWAY_URL": urls["gateway"],
        "BILLING_PUBLIC_URL": urls["billing"],
        "GATEWAY_PUBLIC_URL": urls["gateway"],
        "ACCESS_AUTH_URL": f"http://127.0.0.1:{auth_port}",
        "NOTIFIER_SMTP_HOST": "127.0.0.1",
        "NOTIFIER_SMTP_PORT": str(smtp_port),
        "NOTIFIER_EMAIL_ENABLED": "true",
        "NOTIFIER_SENDER_INTERVAL_SECONDS": "0.3",
        "ACCESS_ROLE_SYNC_INTERVAL_SECONDS": "0.3",
        "ETL_SOURCE_URL": source_url,
        "ETL_BILLING_URL": urls["billing"],
        "LOG_LEVEL": "INFO",
    }
    # seven processes share the machine's PostgreSQL with other test runs: small pools
    env |= {f"{service}_DB_POOL_SIZE": "3" for service in support.ENV_PREFIXES}
    processes: dict[str, subprocess.Popen[bytes]] = {}
    controller.start()
    try:
        async with support.served(auth.app(), auth_port):
            await cinema(env, "etl", "seed-source")
            for name, argv in support.procfile().items():
                argv = [CINEMA if part == "cinema" else part for part in argv]
                if "--port" in argv:
                    argv[argv.index("--port") + 1] = str(ports[name])
                with open(logs / f"{name}.log", "wb") as log:
                    processes[name] = subprocess.Popen(argv, env=env, stdout=log, stderr=log)
            for url in urls.values():
                await support.eventually(functools.partial(ready, url), timeout=60)
            broker = Broker(support.AMQP_URL, prefix=prefix, client_name="tests-e2e")
            await broker.connect()
            try:
                # an event published before a consumer's queue exists never reaches it
                for consumer in support.SERVICE_CONSUMERS:
                    queue = f"{prefix}{consumer}"
                    await support.eventually(
                        functools.partial(consuming, broker, queue), timeout=60
                    )
            finally:
                await broker.close()
            # only now: the catalog's events find every consumer's queue in place
            await cinema(env, "billing", "seed-demo")
            await asyncio.to_thread(
                clients.generate_from_live, urls, tmp_path_factory.mktemp("clients")
            )
            yield Suite(urls, env, source_url, logs, mailbox, auth)
    finally:
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            try:
                await asyncio.to_thread(process.wait, 15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        controller.stop()
        broker = Broker(support.AMQP_URL, prefix=prefix, client_name="tests-e2e-cleanup")
        await broker.connect()
        await support.delete_run_queues(broker)
        await support.delete_events_exchange(broker)
        await broker.close()
        await dbadmin.drop_database(database_url)
        await dbadmin.drop_database(source_url)


def pay_in_the_browser(page: Any, billing_url: str) -> Any:
    shots = iter(range(1, 100))

    async def pay(checkout_url: str, card_number: str) -> None:
        await page.goto(checkout_url)
        spaced = " ".join(card_number[i : i + 4] for i in range(0, len(card_number), 4))
        await page.fill("#card_number", spaced)
        await page.fill("#expiry", "12 / 34")
        await page.fill("#cvc", "123")
        await page.click("#pay")
        shot = support.ARTIFACTS / f"e2e-checkout-{next(shots)}.png"
        if card_number not in (GOOD_CARD, FAILS_LATER_CARD):
            # declined: the sandbox page stays and says why
            await page.wait_for_selector("#error, #status.error", timeout=15_000)
            await page.screenshot(path=str(shot))
            return
        # paid: back on billing's return page, which refreshes until the payment is confirmed
        await page.wait_for_url(f"{billing_url}/**", timeout=15_000)
        await page.wait_for_selector("#status[data-status='succeeded']", timeout=15_000)
        await page.screenshot(path=str(shot))

    return pay


async def test_the_whole_story(suite: Suite) -> None:
    async def run_jobs(moment: datetime) -> None:
        await cinema(suite.env, "billing", "run-jobs", "--now", moment.isoformat())

    lines: list[str] = []
    async with support.browser_page() as page:
        story = Story(
            urls=suite.urls,
            pay=pay_in_the_browser(page, suite.urls["billing"]),
            run_jobs=run_jobs,
            say=lines.append,
            source_url=suite.source_url,
        )
        try:
            people = await story.tell()
        except Exception as exc:
            raise AssertionError(
                "\n".join(lines) + f"\n\n{exc}\n\nprocess logs:\n{suite.log_tails()}"
            ) from exc
    ann, bob, cat, eve = people["ann"], people["bob"], people["cat"], people["eve"]
    (role,) = people["roles"]  # what access said Ann's grant brings

    # the auth service was told: Ann got the plan's role, then lost it with the refund
    assert ("grant", str(ann.id), role) in suite.auth.calls
    await support.eventually(lambda: _true(role not in suite.auth.roles[str(ann.id)]))
    assert str(bob.id) not in suite.auth.roles

    # real email went out over SMTP: the receipt and the refund, as the notifier recorded them
    for who, event_type in (
        (ann, "subscription.activated"),
        (ann, "refund.completed"),
        (cat, "purchase.completed"),
        (eve, "subscription.renewal_failed"),
    ):
        # Eve may be told twice: the story moves billing's jobs a month ahead while the worker
        # that consumes the gateway's decline runs on today's clock, so a decline it records
        # first schedules the next retry from today, and the period-end pass retries it.
        recorded = [n for n in await story.notifications(who) if n.event_type == event_type]
        assert recorded, event_type
        for notification in recorded:
            assert notification.subject in suite.mailbox.subjects_to(who.email), event_type
    assert suite.mailbox.to(bob.email) == []  # nothing to tell Bob: he never paid
    # the gift's email went to Hal, the recipient, not to Ida who paid
    ida, hal = people["ida"], people["hal"]
    delivered = [n for n in await story.notifications(ida) if n.event_type == "gift.delivered"]
    assert len(delivered) == 2  # the gift Hal redeemed and the one Ida took back
    for notification in delivered:
        assert notification.recipient == hal.email
        assert notification.subject in suite.mailbox.subjects_to(hal.email)
        assert notification.subject not in suite.mailbox.subjects_to(ida.email)


async def _true(value: bool) -> bool:
    return value
