"""Several changes of one user's grants settled at once: the access API ends up allowing exactly
what billing says was paid for (the newest snapshot, the only one access keeps, has them all)."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from access_api.app import create_app as create_access_app
from access_api.config import AccessSettings
from billing_api import demo
from billing_api.activation.handlers import on_payment_succeeded
from billing_api.app import create_app
from billing_api.config import BillingSettings
from billing_api.gateway import GatewayClient
from billing_api.models import Payment
from billing_api.refunds import service as refunds
from payment_gateway.app import create_app as create_gateway_app
from shared import events
from shared.auth import AuthSettings
from shared.broker import Broker
from shared.money import Money
from shared.settings import ServiceSettings
from tests import support
from tests.access_api.conftest import (
    Access,
    access,  # the real projection and access API, in-process
    service_headers,
)
from tests.billing_api.conftest import Suite, User, truncate_billing
from tests.payment_gateway.conftest import gateway_settings
from tests.payment_gateway.conftest import truncate as truncate_gateway
from tests.shared.messaging import Probe

__all__ = ["access"]

TITLES = [title for title, _, _ in demo.MOVIES]


@dataclass
class Bought:
    movie_id: UUID
    payment_id: UUID
    checkout_url: str


async def open_purchase(user: User, title: str) -> Bought:
    response = await user.post(
        "/api/v1/purchases", json={"movie_id": str(demo.movie_id(title)), "kind": "buy"}
    )
    assert response.status_code == 201, response.text
    payment = response.json()["latest_payment"]
    return Bought(demo.movie_id(title), UUID(payment["id"]), payment["checkout_url"])


async def purchase_statuses(user: User) -> dict[UUID, str]:
    items = (await user.get("/api/v1/purchases")).json()["items"]
    return {UUID(item["movie_id"]): item["status"] for item in items}


async def settle(session: AsyncSession, bought: Bought, user: User) -> None:
    """What billing's consumer does with the gateway's ``payment.succeeded`` for this payment."""
    payment = await session.get(Payment, bought.payment_id)
    assert payment is not None
    succeeded = events.PaymentSucceeded(
        payment_id=bought.payment_id,
        customer=events.Customer(id=user.id, email="viewer@example.com"),
        amount=Money(amount=payment.amount, currency=payment.currency),
        provider="sandbox",
    )
    await on_payment_succeeded(session, events.wrap(succeeded, producer="payment_gateway"))


async def settle_and_commit(
    factory: async_sessionmaker[AsyncSession], bought: Bought, user: User
) -> None:
    async with factory() as session, session.begin():
        await settle(session, bought, user)


async def waiting_for_the_users_lock(suite: Suite) -> bool:
    """A transaction of this database is blocked on a user's ``entitlement_version`` row."""
    waiting = await suite.scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND wait_event_type = 'Lock' AND query LIKE '%entitlement_version%'"
    )
    return bool(waiting)


async def access_caught_up(suite: Suite, access: Access, user: User) -> None:
    """Wait until access has applied billing's newest snapshot of the user (a bounded wait)."""
    await support.outbox_published(suite.billing.state.resources.engine)
    version = await suite.scalar(
        "SELECT version FROM entitlement_version WHERE user_id = :user", user=user.id
    )
    await access.wait_for("user_grants", "user_id", user.id, int(version))


async def allowed(access: Access, user: User, movies: list[UUID]) -> dict[UUID, bool]:
    return {movie: (await access.check(user.id, movie))["allowed"] for movie in movies}


class TestSettledTogether:
    async def test_second_purchase_settling_while_the_first_is_uncommitted_allows_both_films(
        self, suite: Suite, access: Access
    ) -> None:
        user = suite.as_user()
        first = await open_purchase(user, "Paper Moons")
        second = await open_purchase(user, "Northern Lights")
        factory = suite.billing.state.session_factory
        later: asyncio.Task[None] | None = None
        try:
            async with factory() as session, session.begin():
                await settle(session, first, user)
                later = asyncio.create_task(settle_and_commit(factory, second, user))
                await support.eventually(lambda: waiting_for_the_users_lock(suite))
            await asyncio.wait_for(later, timeout=10)
        finally:
            if later is not None and not later.done():
                later.cancel()
                await asyncio.gather(later, return_exceptions=True)

        assert await purchase_statuses(user) == {
            first.movie_id: "completed",
            second.movie_id: "completed",
        }
        await access_caught_up(suite, access, user)
        assert await allowed(access, user, [first.movie_id, second.movie_id]) == {
            first.movie_id: True,
            second.movie_id: True,
        }

    async def test_refund_committing_while_another_payment_settles_denies_only_the_refunded_film(
        self, suite: Suite, access: Access
    ) -> None:
        user = suite.as_user()
        refunded = await open_purchase(user, "Paper Moons")
        await suite.pay(refunded.checkout_url)

        async def refunded_is_completed() -> bool:
            return (await purchase_statuses(user)).get(refunded.movie_id) == "completed"

        await support.eventually(refunded_is_completed, timeout=15)
        paid = await open_purchase(user, "Northern Lights")
        factory = suite.billing.state.session_factory
        async with factory() as session, session.begin():
            payment = await session.get(Payment, refunded.payment_id)
            assert payment is not None
            await refunds.refund_payment(
                session,
                suite.billing.state.gateway,
                payment,
                amount=payment.amount,
                rule="requested by the viewer",
                reason=None,
            )
            # The other payment is paid now; billing's consumer settles it while the refund is
            # not committed yet.
            assert (await suite.pay(paid.checkout_url)).json()["status"] == "succeeded"
            await support.eventually(lambda: waiting_for_the_users_lock(suite), timeout=15)

        async def paid_is_completed() -> bool:
            return (await purchase_statuses(user)).get(paid.movie_id) == "completed"

        await support.eventually(paid_is_completed, timeout=15)
        assert await purchase_statuses(user) == {
            refunded.movie_id: "refunded",
            paid.movie_id: "completed",
        }
        await access_caught_up(suite, access, user)
        assert await allowed(access, user, [refunded.movie_id, paid.movie_id]) == {
            refunded.movie_id: False,
            paid.movie_id: True,
        }


# --- the real worker processes -------------------------------------------------------------------


@dataclass
class Processes:
    suite: Suite
    access: httpx.AsyncClient


async def consuming(broker: Broker, queue: str) -> bool:
    channel = await broker.channel()
    try:
        declared = await channel.declare_queue(broker.name(queue), passive=True)
    except Exception:
        return False
    finally:
        if not channel.is_closed:
            await channel.close()
    return bool(declared.declaration_result.consumer_count)


@contextlib.asynccontextmanager
async def started(
    command: list[str], env: dict[str, str], log: Path
) -> AsyncIterator[subprocess.Popen[bytes]]:
    with open(log, "wb") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=output)
    try:
        yield process
    finally:
        process.terminate()
        try:
            await asyncio.to_thread(process.wait, 20)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait)


@pytest.fixture
async def processes(
    service_settings: ServiceSettings,
    broker: Broker,
    database_url: str,
    broker_prefix: str,
    tmp_path: Path,
) -> AsyncIterator[Processes]:
    """Billing's API and the gateway in-process; billing's and access's workers as the real
    ``cinema billing worker`` and ``cinema access worker`` processes; the access API in-process,
    answering from the projection the access worker keeps."""
    gateway = create_gateway_app(gateway_settings(service_settings))
    billing = create_app(BillingSettings(**service_settings.model_dump()))
    access_app = create_access_app(AccessSettings(**service_settings.model_dump()))
    cinema = str(Path(sys.executable).with_name("cinema"))
    env = support.suite_environment(database_url, broker_prefix) | {
        "CINEMA_ENV": "development",
        # the worker's scheduled jobs have nothing to ask the gateway here; payments reach
        # billing as the gateway's events
        "BILLING_GATEWAY_URL": f"http://127.0.0.1:{support.free_port()}",
    }
    async with (
        gateway.router.lifespan_context(gateway),
        billing.router.lifespan_context(billing),
        access_app.router.lifespan_context(access_app),
    ):
        await gateway.state.resources.broker.wait_connected()
        await truncate_gateway(gateway)
        await truncate_billing(billing)
        to_gateway = httpx.AsyncClient(
            transport=httpx.ASGITransport(gateway), base_url="http://gateway.test"
        )
        gateway.state.sandbox_sender.http = to_gateway
        billing.state.gateway = GatewayClient(to_gateway, "http://gateway.test", AuthSettings())
        async with billing.state.session_factory() as session, session.begin():
            await demo.load(session)
        probe = await Probe.bind_many(broker, ("entitlements.changed",))
        try:
            async with (
                started([cinema, "access", "worker"], env, tmp_path / "access.log"),
                started([cinema, "billing", "worker"], env, tmp_path / "billing.log"),
            ):
                for queue in ("access", "billing"):

                    async def started_consuming(queue: str = queue) -> bool:
                        return await consuming(broker, queue)

                    await support.eventually(started_consuming, timeout=60)
                async with (
                    httpx.AsyncClient(
                        transport=httpx.ASGITransport(billing), base_url="http://billing.test"
                    ) as http,
                    httpx.AsyncClient(
                        transport=httpx.ASGITransport(access_app),
                        base_url="http://access.test",
                        headers=service_headers(),
                    ) as access_http,
                ):
                    yield Processes(Suite(billing, gateway, http, to_gateway, probe), access_http)
        finally:
            await support.delete_run_queues(broker)
            await probe.close()
            await to_gateway.aclose()


class TestRealWorker:
    async def test_six_purchases_paid_at_once_are_all_allowed_by_access(
        self, processes: Processes
    ) -> None:
        suite = processes.suite
        user = suite.as_user(uuid4())
        bought = [await open_purchase(user, title) for title in TITLES]
        assert len(bought) >= 6
        paid = await asyncio.gather(*(suite.pay(b.checkout_url) for b in bought))
        assert [r.json()["status"] for r in paid] == ["succeeded"] * len(bought)

        async def all_completed() -> bool:
            statuses = await purchase_statuses(user)
            return list(statuses.values()) == ["completed"] * len(bought)

        await support.eventually(all_completed, timeout=30)
        await support.outbox_published(suite.billing.state.resources.engine, timeout=30)
        version = int(
            await suite.scalar(
                "SELECT version FROM entitlement_version WHERE user_id = :user", user=user.id
            )
        )

        async def access_has_the_newest_snapshot(version: int = version) -> bool:
            applied = await suite.scalar(
                "SELECT version FROM access.user_grants WHERE user_id = :user", user=user.id
            )
            return bool(applied == version)

        await support.eventually(access_has_the_newest_snapshot, timeout=30)
        answer = await processes.access.post(
            f"/api/v1/access/{user.id}/movies",
            json={"movie_ids": [str(b.movie_id) for b in bought]},
        )
        assert answer.status_code == 200, answer.text
        results: dict[str, Any] = answer.json()["results"]
        assert {movie: result["allowed"] for movie, result in results.items()} == {
            str(b.movie_id): True for b in bought
        }
