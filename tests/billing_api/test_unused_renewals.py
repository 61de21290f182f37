"""Renewals that race with upgrades, cancels and refunds: a renewal for a period the subscription
will not run is refunded in full and changes nothing; cancel then resume keeps dunning going.

Each sequence runs the scheduled jobs (``cinema billing run-jobs --now`` as a process, or the same
pass in-process when a charge must be held in flight) and billing's real payment consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
import pytest
import sqlalchemy as sa
import uvicorn

from billing_api import jobs
from billing_api.config import BillingSettings
from billing_api.gateway import GatewayClient, GatewayUnavailable
from billing_api.periods import add_months
from billing_api.refunds import handlers as refund_handlers
from shared import clock, events
from shared.auth import AuthSettings
from shared.money import Money
from tests import support
from tests.billing_api.conftest import Suite, User
from tests.billing_api.test_admin_api import admin
from tests.billing_api.test_lifecycle import (
    end_of,
    latest_grants,
    off_session_charges,
    run_jobs,
    subscribed,
)
from tests.billing_api.test_provider_side import (
    dashboard,
    lines_of,
    statement,
    wait_for_payment,
)
from tests.billing_api.test_refunds import NeverAsked


async def change(user: User, subscription_id: str, plan_id: str) -> dict[str, Any]:
    answer = await user.post(
        f"/api/v1/subscriptions/{subscription_id}/change-plan", json={"plan_id": plan_id}
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def renewal_payment(user: User) -> dict[str, Any]:
    payments = (await user.get("/api/v1/payments")).json()["items"]
    renewals: list[dict[str, Any]] = [p for p in payments if p["purpose"] == "renewal"]
    assert len(renewals) == 1, renewals
    return renewals[0]


async def refunds_of(suite: Suite, payment_id: str) -> list[Any]:
    async with suite.billing.state.resources.engine.connect() as conn:
        rows = await conn.execute(
            sa.text("SELECT amount, status, reason FROM refund WHERE payment_id = :p"),
            {"p": payment_id},
        )
        return list(rows.all())


async def refunded_in_ledger(user: User) -> list[int]:
    statement = (await user.get("/api/v1/statement")).json()["items"]
    return sorted(
        line["amount"]["amount"]
        for entry in statement
        if entry["kind"] == "refund"
        for line in entry["lines"]
        if line["side"] == "credit"
    )


async def on_plan(user: User, subscription_id: str, plan_id: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    async def switched() -> bool:
        seen.update(await user.subscription(subscription_id))
        return bool(seen["plan_id"] == plan_id)

    await support.eventually(switched, timeout=15)
    return seen


async def run_jobs_process(suite: Suite, env: dict[str, str], at: datetime) -> dict[str, int]:
    """One pass of ``cinema billing run-jobs --now`` as its own process."""
    cinema = str(Path(sys.executable).with_name("cinema"))
    result = await asyncio.to_thread(
        subprocess.run,
        [cinema, "billing", "run-jobs", "--now", at.isoformat()],
        env=env,
        capture_output=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    done: dict[str, int] = orjson.loads(result.stdout)
    return done


@contextlib.asynccontextmanager
async def jobs_process_env(
    suite: Suite, database_url: str, broker_prefix: str
) -> AsyncIterator[dict[str, str]]:
    """The environment of a ``run-jobs`` process that reaches this suite's gateway over HTTP
    (the running app itself, served without a second lifespan, so its sandbox keeps delivering
    webhooks to it)."""
    env = support.suite_environment(database_url, broker_prefix)
    port = support.free_port()
    config = uvicorn.Config(suite.gateway, host="127.0.0.1", port=port, lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await support.eventually(lambda: _started(server), timeout=20)
    env["BILLING_GATEWAY_URL"] = f"http://127.0.0.1:{port}"
    try:
        yield env
    finally:
        server.should_exit = True
        await task


async def _started(server: uvicorn.Server) -> bool:
    return bool(server.started)


class HeldCharge:
    """Holds every off-session charge the jobs make until :meth:`release` (a charge in flight)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, gateway: GatewayClient) -> None:
        self.started = asyncio.Event()
        self.released = asyncio.Event()
        charge: Callable[..., Awaitable[Any]] = gateway.charge_off_session

        async def held(**kwargs: Any) -> Any:
            self.started.set()
            await self.released.wait()
            return await charge(**kwargs)

        monkeypatch.setattr(gateway, "charge_off_session", held)

    def release(self) -> None:
        self.released.set()


async def jobs_pass(suite: Suite, at: datetime) -> dict[str, int]:
    """The pass ``run-jobs --now`` makes, in this process (inside the caller's frozen clock)."""
    settings: BillingSettings = suite.billing.state.settings
    return await jobs.run_once(
        suite.billing.state.session_factory, suite.billing.state.gateway, settings, at
    )


class TestUpgradeAfterTheRenewalWasCharged:
    async def test_the_renewal_is_refunded_in_full_and_the_upgrade_runs_from_its_payment(
        self, suite: Suite, database_url: str, broker_prefix: str
    ) -> None:
        user = suite.as_user()
        premium = await suite.plan("premium")
        subscription = await subscribed(suite, user, plan="basic")
        end = end_of(subscription)
        quoted, renewed, paid = (end - timedelta(minutes=m) for m in (61, 45, 30))

        async with jobs_process_env(suite, database_url, broker_prefix) as env:
            with clock.frozen(quoted):
                upgrade = await change(user, subscription["id"], premium["id"])
            with clock.frozen(renewed):
                assert (await run_jobs_process(suite, env, renewed))["renew_due_subscriptions"] == 1
            renewal = await renewal_payment(user)
            assert renewal["status"] == "succeeded"
            with clock.frozen(paid):
                await suite.pay(upgrade["payment"]["checkout_url"])
                upgraded = await on_plan(user, subscription["id"], premium["id"])
                done = await run_jobs_process(suite, env, paid + timedelta(minutes=1))
        assert done["send_queued_refunds"] == 1

        assert upgraded["status"] == "active"
        assert datetime.fromisoformat(upgraded["current_period_start"]) == paid
        assert end_of(upgraded) == add_months(paid, 1)
        refunded = (await user.get(f"/api/v1/payments/{renewal['id']}")).json()
        assert refunded["status"] == "refunded"
        assert refunded["refunded"] == refunded["amount"] == {"amount": 29900, "currency": "RUB"}
        assert [(r.amount, r.status, r.reason) for r in await refunds_of(suite, renewal["id"])] == [
            (29900, "succeeded", "renewal_superseded")
        ]
        assert 29900 in await refunded_in_ledger(user)
        after = await user.subscription(subscription["id"])
        assert (after["status"], after["plan_id"]) == ("active", premium["id"])
        grants = await latest_grants(suite, user)
        assert [str(grant.plan_id) for grant in grants] == [premium["id"]]


class TestUpgradeWhileTheRenewalIsInFlight:
    async def test_the_renewal_succeeding_later_is_refunded_and_the_user_stays_upgraded(
        self, suite: Suite, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        user = suite.as_user()
        basic, premium = await suite.plan("basic"), await suite.plan("premium")
        subscription = await subscribed(suite, user, plan="basic")
        end = end_of(subscription)
        held = HeldCharge(monkeypatch, suite.billing.state.gateway)

        with clock.frozen(end - timedelta(minutes=61)) as frozen:
            upgrade = await change(user, subscription["id"], premium["id"])
            at = frozen.advance(timedelta(minutes=16))
            run = asyncio.create_task(jobs_pass(suite, at))
            await held.started.wait()  # the renewal payment is committed, its charge is out
            paid = frozen.advance(timedelta(minutes=5))
            await suite.pay(upgrade["payment"]["checkout_url"])
            await on_plan(user, subscription["id"], premium["id"])
            held.release()
            done = await run
            assert done["renew_due_subscriptions"] == 1, "the charge itself succeeded"

            renewal = await renewal_payment(user)

            async def refunded() -> bool:
                payment = (await user.get(f"/api/v1/payments/{renewal['id']}")).json()
                return bool(payment["status"] == "refunded")

            await jobs_pass(suite, frozen.advance(timedelta(minutes=1)))
            await support.eventually(refunded, timeout=15)

        after = await user.subscription(subscription["id"])
        assert (after["status"], after["plan_id"]) == ("active", premium["id"])
        assert after["plan_id"] != basic["id"]
        assert datetime.fromisoformat(after["current_period_start"]) == paid
        assert end_of(after) == add_months(paid, 1)
        assert after["latest_payment"]["id"] == upgrade["payment"]["id"]
        assert [(r.amount, r.status, r.reason) for r in await refunds_of(suite, renewal["id"])] == [
            (29900, "succeeded", "renewal_superseded")
        ]
        assert await suite.events("subscription.renewed") == []
        grants = await latest_grants(suite, user)
        assert [str(grant.plan_id) for grant in grants] == [premium["id"]]


class TestCancelWhileTheRenewalIsInFlight:
    async def test_cancel_now_then_the_renewal_succeeds_refunds_it_and_revives_nothing(
        self, suite: Suite, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        user = suite.as_user()
        subscription = await subscribed(suite, user, plan="basic")
        end = end_of(subscription)
        held = HeldCharge(monkeypatch, suite.billing.state.gateway)

        with clock.frozen(end - timedelta(minutes=45)) as frozen:
            run = asyncio.create_task(jobs_pass(suite, frozen.current))
            await held.started.wait()
            frozen.advance(timedelta(minutes=1))
            canceled = await user.post(
                f"/api/v1/subscriptions/{subscription['id']}/cancel", json={"at_period_end": False}
            )
            assert canceled.json()["status"] == "canceled"
            held.release()
            await run
            renewal = await renewal_payment(user)

            async def refunded() -> bool:
                payment = (await user.get(f"/api/v1/payments/{renewal['id']}")).json()
                return bool(payment["status"] == "refunded")

            await jobs_pass(suite, frozen.advance(timedelta(minutes=1)))
            await support.eventually(refunded, timeout=15)

        after = await user.subscription(subscription["id"])
        assert after["status"] == "canceled"
        assert end_of(after) == end, "the period was not extended"
        assert after["latest_payment"]["id"] == subscription["latest_payment"]["id"]
        assert [(r.amount, r.status, r.reason) for r in await refunds_of(suite, renewal["id"])] == [
            (29900, "succeeded", "renewal_after_cancel")
        ]
        assert 29900 in await refunded_in_ledger(user)
        assert await latest_grants(suite, user) == []
        assert await suite.events("subscription.renewed") == []

    async def test_cancel_at_period_end_then_the_renewal_succeeds_refunds_it_and_ends_on_time(
        self, suite: Suite, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        user = suite.as_user()
        subscription = await subscribed(suite, user, plan="basic")
        end = end_of(subscription)
        held = HeldCharge(monkeypatch, suite.billing.state.gateway)

        with clock.frozen(end - timedelta(minutes=45)) as frozen:
            run = asyncio.create_task(jobs_pass(suite, frozen.current))
            await held.started.wait()
            await user.post(f"/api/v1/subscriptions/{subscription['id']}/cancel", json={})
            held.release()
            await run
            await jobs_pass(suite, frozen.advance(timedelta(minutes=1)))
        await run_jobs(suite, end)

        renewal = await renewal_payment(user)
        assert renewal["status"] == "refunded"
        after = await user.subscription(subscription["id"])
        assert after["status"] == "expired"
        assert end_of(after) == end
        assert await latest_grants(suite, user) == []


class TestRefundWhileTheRenewalIsInFlight:
    async def test_a_refund_then_the_renewal_succeeds_refunds_the_renewal_too(
        self, suite: Suite, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        user = suite.as_user()
        subscription = await subscribed(suite, user, plan="basic")
        first = subscription["latest_payment"]["id"]
        end = end_of(subscription)
        held = HeldCharge(monkeypatch, suite.billing.state.gateway)

        with clock.frozen(end - timedelta(minutes=45)) as frozen:
            run = asyncio.create_task(jobs_pass(suite, frozen.current))
            await held.started.wait()
            refund = await admin(
                suite,
                "POST",
                f"/api/v1/admin/payments/{first}/refund",
                json={"reason": "asked by phone"},
            )
            assert refund.status_code == 201, refund.text
            assert (await user.subscription(subscription["id"]))["status"] == "canceled"
            held.release()
            await run
            renewal = await renewal_payment(user)
            await jobs_pass(suite, frozen.advance(timedelta(minutes=1)))

            async def refunded() -> bool:
                payment = (await user.get(f"/api/v1/payments/{renewal['id']}")).json()
                return bool(payment["status"] == "refunded")

            await support.eventually(refunded, timeout=15)

        after = await user.subscription(subscription["id"])
        assert after["status"] == "canceled"
        assert end_of(after) == end
        assert await latest_grants(suite, user) == []


class TestResumeDuringDunning:
    async def test_cancel_then_resume_keeps_the_retry_and_the_retry_renews(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        subscription = await subscribed(suite, user, "4000000000000341", plan="basic")
        end = end_of(subscription)
        first_try = end - timedelta(minutes=45)
        await run_jobs(suite, first_try)  # declined: the retry is due an hour later
        assert await off_session_charges(suite) == 1

        with clock.frozen(first_try + timedelta(minutes=10)):
            cancel = await user.post(f"/api/v1/subscriptions/{subscription['id']}/cancel", json={})
            assert cancel.json()["cancel_at_period_end"] is True
        with clock.frozen(first_try + timedelta(minutes=20)):
            resumed = await user.post(f"/api/v1/subscriptions/{subscription['id']}/resume")
            assert resumed.status_code == 200, resumed.text
        async with suite.gateway.state.resources.engine.begin() as conn:  # the card works again
            await conn.execute(
                sa.text("UPDATE sandbox_payment_method SET fails_off_session = false")
            )

        retry = first_try + timedelta(hours=1)
        assert (await run_jobs(suite, retry))["renew_due_subscriptions"] == 1
        assert await off_session_charges(suite) == 2
        after = await user.subscription(subscription["id"])
        assert after["status"] == "active"
        assert end_of(after) == add_months(end, 1)
        assert len(await suite.events("subscription.renewed")) == 1


class TestRenewalWhileARefundWaitsForTheProvider:
    async def test_the_refund_completing_later_refunds_the_renewal_it_made_unused(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        subscription = await subscribed(suite, user, plan="basic")
        first = subscription["latest_payment"]["id"]
        end = end_of(subscription)
        real_gateway = suite.billing.state.gateway
        suite.billing.state.gateway = NeverAsked(
            suite.gateway_http, "http://gateway.test", AuthSettings()
        )

        with clock.frozen(end - timedelta(minutes=90)) as frozen:
            asked = await admin(
                suite, "POST", f"/api/v1/admin/payments/{first}/refund", json={"reason": "phone"}
            )
            assert asked.status_code == 201, asked.text
            assert asked.json()["status"] == "pending"  # the provider answers later
            done = await jobs_pass(suite, frozen.advance(timedelta(minutes=45)))
            assert done["renew_due_subscriptions"] == 1
            renewal = await renewal_payment(user)
            assert renewal["status"] == "succeeded"

            frozen.advance(timedelta(minutes=5))  # the provider confirms the first refund
            async with suite.billing.state.session_factory() as session, session.begin():
                await refund_handlers.on_refund_succeeded(
                    session,
                    events.wrap(
                        events.RefundSucceeded(
                            refund_id=UUID(asked.json()["id"]),
                            payment_id=UUID(first),
                            customer=events.Customer(id=user.id),
                            amount=Money(amount=29900, currency="RUB"),
                            provider="sandbox",
                        ),
                        producer="payment_gateway",
                    ),
                )
            assert (await user.subscription(subscription["id"]))["status"] == "canceled"
            suite.billing.state.gateway = real_gateway
            await jobs_pass(suite, frozen.advance(timedelta(minutes=1)))

            async def refunded() -> bool:
                payment = (await user.get(f"/api/v1/payments/{renewal['id']}")).json()
                return bool(payment["status"] == "refunded")

            await support.eventually(refunded, timeout=15)

        assert [(r.amount, r.status) for r in await refunds_of(suite, renewal["id"])] == [
            (29900, "succeeded")
        ]
        assert sorted(await refunded_in_ledger(user)) == [29900, 29900]
        assert (await user.subscription(subscription["id"]))["status"] == "canceled"
        assert await latest_grants(suite, user) == []

    async def test_a_dispute_before_the_renewed_period_begins_refunds_the_renewal(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        subscription = await subscribed(suite, user, plan="basic")
        first = subscription["latest_payment"]["id"]
        end = end_of(subscription)
        await run_jobs(suite, end - timedelta(minutes=45))
        renewal = await renewal_payment(user)
        assert renewal["status"] == "succeeded"

        with clock.frozen(end - timedelta(minutes=30)) as frozen:
            async with suite.billing.state.session_factory() as session, session.begin():
                await refund_handlers.on_payment_disputed(
                    session,
                    events.wrap(
                        events.PaymentDisputed(
                            payment_id=UUID(first),
                            customer=events.Customer(id=user.id),
                            amount=Money(amount=29900, currency="RUB"),
                            provider="sandbox",
                            reason="fraudulent",
                        ),
                        producer="payment_gateway",
                    ),
                )
            await jobs_pass(suite, frozen.advance(timedelta(minutes=1)))

            async def refunded() -> bool:
                payment = (await user.get(f"/api/v1/payments/{renewal['id']}")).json()
                return bool(payment["status"] == "refunded")

            await support.eventually(refunded, timeout=15)

        assert [(r.amount, r.status) for r in await refunds_of(suite, renewal["id"])] == [
            (29900, "succeeded")
        ]
        assert (await user.subscription(subscription["id"]))["status"] == "canceled"
        assert await latest_grants(suite, user) == []


class RefundsDown:
    """The gateway takes no refund until :meth:`restore` (an outage)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, gateway: GatewayClient) -> None:
        self.down = True
        create_refund: Callable[..., Awaitable[Any]] = gateway.create_refund

        async def maybe_down(*args: Any) -> Any:
            if self.down:
                raise GatewayUnavailable("the gateway is down")
            return await create_refund(*args)

        monkeypatch.setattr(gateway, "create_refund", maybe_down)

    def restore(self) -> None:
        self.down = False


async def renewal_refund_queued(
    suite: Suite, user: User, monkeypatch: pytest.MonkeyPatch, at: datetime
) -> tuple[dict[str, Any], RefundsDown]:
    """A renewal that succeeded after a cancel, its full refund queued while the gateway takes
    no refunds."""
    subscription = await subscribed(suite, user, plan="basic")
    gateway = suite.billing.state.gateway
    held = HeldCharge(monkeypatch, gateway)
    outage = RefundsDown(monkeypatch, gateway)
    with clock.frozen(at):
        run = asyncio.create_task(jobs_pass(suite, at))
        await held.started.wait()
        canceled = await user.post(
            f"/api/v1/subscriptions/{subscription['id']}/cancel", json={"at_period_end": False}
        )
        assert canceled.json()["status"] == "canceled"
        held.release()
        assert (await run)["send_queued_refunds"] == 0  # the gateway is down
    renewal = await renewal_payment(user)
    assert [(r.amount, r.status) for r in await refunds_of(suite, renewal["id"])] == [
        (29900, "queued")
    ]
    return renewal, outage


def a_month_on() -> datetime:
    """45 minutes before the end of a monthly subscription bought now."""
    return add_months(clock.now(), 1) - timedelta(minutes=45)


class TestMoneyOfARenewalWhoseRefundIsQueued:
    async def test_a_dispute_takes_the_money_back_and_the_queued_refund_is_dropped(
        self, suite: Suite, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        user = suite.as_user()
        at = a_month_on()
        renewal, outage = await renewal_refund_queued(suite, user, monkeypatch, at)

        await dashboard(suite, renewal["id"], "disputes", {"reason": "fraudulent"})
        await wait_for_payment(user, renewal["id"], "disputed")
        outage.restore()
        with clock.frozen(at + timedelta(minutes=1)) as frozen:
            await jobs_pass(suite, frozen.current)

        assert [r.status for r in await refunds_of(suite, renewal["id"])] == ["failed"]
        disputed = [t for t in await statement(user) if t["kind"] == "dispute"]
        assert [lines_of(t) for t in disputed] == [
            {("disputes", "debit", 29900), ("provider_clearing:sandbox", "credit", 29900)}
        ]
        assert 29900 not in await refunded_in_ledger(user)
        after = (await user.get(f"/api/v1/payments/{renewal['id']}")).json()
        assert (after["status"], after["refunded"]["amount"]) == ("disputed", 0)

    async def test_part_refunded_at_the_provider_comes_off_the_queued_refund(
        self, suite: Suite, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        user = suite.as_user()
        at = a_month_on()
        renewal, outage = await renewal_refund_queued(suite, user, monkeypatch, at)

        await dashboard(suite, renewal["id"], "refunds", {"amount": 10000})

        async def recorded() -> bool:
            return (10000, "succeeded") in [
                (r.amount, r.status) for r in await refunds_of(suite, renewal["id"])
            ]

        await support.eventually(recorded, timeout=15)
        outage.restore()
        with clock.frozen(at + timedelta(minutes=1)) as frozen:
            assert (await jobs_pass(suite, frozen.current))["send_queued_refunds"] == 1
        await wait_for_payment(user, renewal["id"], "refunded")

        assert sorted((r.amount, r.status) for r in await refunds_of(suite, renewal["id"])) == [
            (10000, "succeeded"),
            (19900, "succeeded"),
        ]
        assert sorted(await refunded_in_ledger(user)) == [10000, 19900]
        after = (await user.get(f"/api/v1/payments/{renewal['id']}")).json()
        assert after["refunded"]["amount"] == 29900
