"""Pauses across real processes: `cinema billing run-jobs` processes against a gateway served
over HTTP. Two workers at the end of many pauses renew each subscription exactly once, from the
pause's end; subscribers ending their pause at the moment a worker charges the pause-end
renewal are charged once."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import orjson
import sqlalchemy as sa

from billing_api.periods import add_months
from shared import clock
from tests import support
from tests.billing_api.conftest import Suite
from tests.billing_api.test_lifecycle import off_session_charges
from tests.billing_api.test_pauses import pause_of, paused, start_of, url

PAUSED = 200


async def seed_paused_subscriptions(suite: Suite, count: int, resumes_at: datetime) -> None:
    """Monthly subscriptions paused for a month that ends at ``resumes_at``, each with a card
    the sandbox saved."""
    plan = await suite.plan("premium")
    starts_at = resumes_at - timedelta(days=30)
    rows = [(uuid4(), uuid4(), f"pm_sb_pause{n:06d}") for n in range(count)]
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
                " payment_method_ref, renewal_attempts, pause_starts_at, pause_resumes_at)"
                " VALUES (:id, :user, 'seed@example.com', 'ru', :plan, 'paused', 1,"
                " :paid_from, :starts, true, false, :pm, 0, :starts, :resumes)"
            ),
            [
                {
                    "id": sub,
                    "user": user,
                    "plan": plan["id"],
                    "paid_from": starts_at - timedelta(days=30),
                    "starts": starts_at,
                    "resumes": resumes_at,
                    "pm": pm,
                }
                for sub, user, pm in rows
            ],
        )


def run_jobs_command(at: datetime) -> list[str]:
    cinema = str(Path(sys.executable).with_name("cinema"))
    return [cinema, "billing", "run-jobs", "--now", at.isoformat()]


async def run_process(command: list[str], env: dict[str, str]) -> dict[str, Any]:
    result = await asyncio.to_thread(
        subprocess.run, command, env=env, capture_output=True, check=False
    )
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    done: dict[str, Any] = orjson.loads(result.stdout)
    return done


async def test_two_workers_renew_each_pause_end_once_from_the_pause_end(
    suite: Suite, database_url: str, broker_prefix: str
) -> None:
    resumes_at = (clock.now() + timedelta(minutes=10)).replace(microsecond=0)
    await seed_paused_subscriptions(suite, PAUSED, resumes_at)
    env = support.suite_environment(database_url, broker_prefix)
    async with support.served(suite.gateway, support.free_port(), running=True) as gateway_url:
        env["BILLING_GATEWAY_URL"] = gateway_url
        command = run_jobs_command(resumes_at - timedelta(minutes=5))
        first, second = await asyncio.gather(*(run_process(command, env) for _ in range(2)))

    renewed = [done["renew_due_subscriptions"] for done in (first, second)]
    assert sum(renewed) == PAUSED, renewed
    assert await off_session_charges(suite) == PAUSED
    assert (
        await suite.scalar(
            "SELECT max(n) FROM (SELECT count(*) AS n FROM payment WHERE purpose = 'renewal'"
            " GROUP BY subscription_id) counts"
        )
        == 1
    )
    assert (
        await suite.scalar(
            "SELECT count(*) FROM subscription WHERE status = 'active'"
            " AND pause_starts_at IS NULL AND current_period_start = :resumes"
            " AND current_period_end = :end",
            resumes=resumes_at,
            end=add_months(resumes_at, 1),
        )
        == PAUSED
    )


async def test_ending_a_pause_while_a_worker_charges_its_end_charges_once(
    suite: Suite, database_url: str, broker_prefix: str
) -> None:
    users = [suite.as_user() for _ in range(8)]
    subscriptions = [await paused(suite, user) for user in users]
    at = max(pause_of(s)[1] for s in subscriptions) - timedelta(minutes=30)
    env = support.suite_environment(database_url, broker_prefix)
    async with support.served(suite.gateway, support.free_port(), running=True) as gateway_url:
        env["BILLING_GATEWAY_URL"] = gateway_url
        worker = asyncio.create_task(run_process(run_jobs_command(at), env))
        with clock.frozen(at):
            answers = await asyncio.gather(
                *(
                    user.post(url(subscription, "resume"))
                    for user, subscription in zip(users, subscriptions, strict=True)
                )
            )
        await worker

    # Each resume either ended the pause now (200) or found it already renewed by the worker
    # (409: nothing left to resume); either way the subscription runs and was charged once.
    assert {answer.status_code for answer in answers} <= {200, 409}, [a.text for a in answers]
    assert await off_session_charges(suite) == len(users)
    for user, subscription, answer in zip(users, subscriptions, answers, strict=True):
        now = await user.subscription(subscription["id"])
        assert (now["status"], now["pause"]) == ("active", None)
        _, resumes_at = pause_of(subscription)
        assert start_of(now) == (at if answer.status_code == 200 else resumes_at)
        renewals = [
            p
            for p in (await user.get("/api/v1/payments")).json()["items"]
            if p["purpose"] == "renewal"
        ]
        assert [p["status"] for p in renewals] == ["succeeded"]
