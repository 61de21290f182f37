from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import orjson

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
