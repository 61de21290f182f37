"""Two real `cinema billing run-jobs` processes over 1,000 due subscriptions, against a real
gateway served over HTTP: every subscription is renewed exactly once."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from uuid import uuid4

import orjson
import sqlalchemy as sa

from shared import clock
from tests import support
from tests.billing_api.conftest import Suite

DUE = 1000


async def seed_due_subscriptions(suite: Suite, count: int) -> None:
    """Active monthly subscriptions ending soon, each with a card the sandbox saved."""
    plan = await suite.plan("premium")
    end = clock.now() + timedelta(minutes=10)
    rows = [(uuid4(), uuid4(), f"pm_sb_seed{n:06d}") for n in range(count)]
    async with suite.gateway.state.resources.engine.begin() as conn:
        await conn.execute(
            sa.text(
                "INSERT INTO sandbox_payment_method"
                " (id, customer_id, card_last4, fails_off_session)"
                " VALUES (:pm, :user, '4242', false)"
            ),
            [{"pm": pm, "user": user} for _, user, pm in rows],
        )
    async with suite.billing.state.resources.engine.begin() as conn:
        await conn.execute(
            sa.text(
                "INSERT INTO subscription (id, user_id, email, locale, plan_id, status, months,"
                " current_period_start, current_period_end, auto_renew, cancel_at_period_end,"
                " payment_method_ref, renewal_attempts)"
                " VALUES (:id, :user, 'seed@example.com', 'ru', :plan, 'active', 1,"
                " :start, :end, true, false, :pm, 0)"
            ),
            [
                {
                    "id": sub,
                    "user": user,
                    "plan": plan["id"],
                    "start": end - timedelta(days=30),
                    "end": end,
                    "pm": pm,
                }
                for sub, user, pm in rows
            ],
        )


async def test_two_worker_processes_renew_each_due_subscription_exactly_once(
    suite: Suite, database_url: str, broker_prefix: str
) -> None:
    await seed_due_subscriptions(suite, DUE)
    port = support.free_port()
    env = support.suite_environment(database_url, broker_prefix)
    async with support.served(suite.gateway, port, running=True) as gateway_url:
        env["BILLING_GATEWAY_URL"] = gateway_url
        cinema = str(Path(sys.executable).with_name("cinema"))
        at = (clock.now() + timedelta(minutes=5)).isoformat()
        command = [cinema, "billing", "run-jobs", "--now", at]
        first, second = await asyncio.gather(
            *(
                asyncio.to_thread(
                    subprocess.run, command, env=env, capture_output=True, check=False
                )
                for _ in range(2)
            )
        )
    for result in (first, second):
        assert result.returncode == 0, result.stderr.decode()[-2000:]
    renewed = [orjson.loads(r.stdout)["renew_due_subscriptions"] for r in (first, second)]
    assert sum(renewed) == DUE, renewed
    assert all(renewed), "both processes should have taken a share"

    async with suite.gateway.state.resources.engine.connect() as conn:
        charges = await conn.scalar(
            sa.text("SELECT count(*) FROM payment WHERE mode = 'off_session'")
        )
    per_subscription = await suite.scalar(
        "SELECT max(n) FROM (SELECT count(*) AS n FROM payment WHERE purpose = 'renewal'"
        " GROUP BY subscription_id) counts"
    )
    assert charges == DUE
    assert per_subscription == 1
    assert (
        await suite.scalar(
            "SELECT count(*) FROM subscription WHERE status = 'active'"
            " AND current_period_end > now() + interval '20 days'"
        )
        == DUE
    )
