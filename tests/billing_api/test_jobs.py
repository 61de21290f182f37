from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import orjson
import sqlalchemy as sa

from billing_api import demo
from billing_api.activation.expired_checkouts import abandon_expired_checkouts
from shared import clock
from tests import support
from tests.billing_api.conftest import Suite


class TestRunJobs:
    async def test_run_jobs_with_now_in_the_future_abandons_a_declined_checkout(
        self, suite: Suite, database_url: str, broker_prefix: str
    ) -> None:
        user = suite.as_user()
        plan = await suite.plan("basic")
        subscription = (
            await user.post("/api/v1/subscriptions", json={"plan_id": plan["id"]})
        ).json()
        await suite.pay(subscription["latest_payment"]["checkout_url"], "4000000000000002")

        async def failed() -> bool:
            payment = await user.get(f"/api/v1/payments/{subscription['latest_payment']['id']}")
            return bool(payment.json()["status"] == "failed")

        await support.eventually(failed, timeout=15)
        cinema = str(Path(sys.executable).with_name("cinema"))
        result = await asyncio.to_thread(
            subprocess.run,
            [cinema, "billing", "run-jobs", "--now", "2099-01-01T00:00:00+00:00"],
            env=support.suite_environment(database_url, broker_prefix),
            capture_output=True,
            check=False,
        )

        assert result.returncode == 0, result.stderr.decode()
        assert orjson.loads(result.stdout)["abandon_expired_checkouts"] == 1
        assert (await user.subscription(subscription["id"]))["status"] == "abandoned"


class TestAbandonMeetsASettlement:
    async def test_an_expired_checkout_being_paid_is_skipped_not_deadlocked_then_abandoned(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        plan = await suite.plan("basic")
        subscription = (
            await user.post("/api/v1/subscriptions", json={"plan_id": plan["id"]})
        ).json()
        payment_id = subscription["latest_payment"]["id"]
        later = clock.now() + timedelta(days=1)  # its checkout has expired by then
        engine = suite.billing.state.resources.engine

        # A settlement of the payment in billing's lock order: the subscription first, the
        # payment next. It holds the first lock when the job runs.
        async with engine.connect() as settling:
            transaction = await settling.begin()
            await settling.execute(
                sa.text("SELECT id FROM subscription WHERE id = :id FOR UPDATE"),
                {"id": subscription["id"]},
            )
            job = asyncio.create_task(abandon(suite, later))

            async def job_done_or_waiting() -> bool:
                return job.done() or await lock_waits(suite) > 0

            await support.eventually(job_done_or_waiting, timeout=15)
            await settling.execute(
                sa.text("SELECT id FROM payment WHERE id = :id FOR UPDATE"), {"id": payment_id}
            )
            await transaction.commit()
        assert await job == 0, "skipped while it is being settled"

        assert await abandon(suite, later) == 1
        assert (await user.subscription(subscription["id"]))["status"] == "abandoned"


class TestAbandonInTwoWorkers:
    async def test_two_passes_at_once_close_each_expired_checkout_once_and_release_its_promo_once(
        self, suite: Suite
    ) -> None:
        plan = await suite.plan("basic")
        subscriptions = []
        for _ in range(3):
            user = suite.as_user()
            opened = await user.post(
                "/api/v1/subscriptions", json={"plan_id": plan["id"], "promo_code": "WELCOME15"}
            )
            assert opened.status_code == 201, opened.text
            subscriptions.append((user, opened.json()["id"]))
        purchases = []
        for title in ("Northern Lights", "Paper Moons"):
            user = suite.as_user()
            opened = await user.post(
                "/api/v1/purchases", json={"movie_id": str(demo.movie_id(title)), "kind": "buy"}
            )
            assert opened.status_code == 201, opened.text
            purchases.append(user)
        assert await promo_redemptions(suite) == 3
        later = clock.now() + timedelta(days=1)  # every checkout has expired by then

        first, second = await asyncio.gather(abandon(suite, later), abandon(suite, later))

        assert first + second == 5
        for user, subscription_id in subscriptions:
            assert (await user.subscription(subscription_id))["status"] == "abandoned"
        for user in purchases:
            [purchase] = (await user.get("/api/v1/purchases")).json()["items"]
            assert purchase["status"] == "abandoned"
        assert await promo_redemptions(suite) == 0
        assert await abandon(suite, later) == 0


async def promo_redemptions(suite: Suite) -> int:
    return int(await suite.scalar("SELECT redemptions FROM promo_code WHERE code = 'WELCOME15'"))


async def abandon(suite: Suite, now: datetime) -> int:
    return await abandon_expired_checkouts(suite.billing.state.session_factory, now)


async def lock_waits(suite: Suite) -> int:
    found = await suite.scalar(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    return int(found)
