"""Refunds that stay pending are settled by reconciliation: a refund the provider never
received is asked for again under its id and then cancels what it paid for; one the provider
failed frees its money; one still undecided is asked again after a pause."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa

from billing_api import jobs
from billing_api.gateway import GatewayClient, GatewayRefund
from shared import clock
from tests.billing_api.conftest import Suite, User
from tests.billing_api.test_refunds import at, paid_subscription

AFTER = timedelta(minutes=16)  # past BILLING_RECONCILE_AFTER_MINUTES (15)


async def run_jobs(suite: Suite, now: datetime) -> dict[str, int]:
    state = suite.billing.state
    return await jobs.run_once(state.session_factory, state.gateway, state.settings, now)


@pytest.fixture
def provider_misses_refunds(suite: Suite) -> Iterator[Callable[[], None]]:
    """The sandbox loses every refund request before it is read, until the test calls what
    this yields (or ends)."""
    sandbox = suite.gateway.state.sandbox

    async def lost_on_the_way(*args: Any) -> Any:
        raise ValueError("connection reset before the provider read the request")

    def receives_again() -> None:
        vars(sandbox).pop("refund", None)

    sandbox.refund = lost_on_the_way
    yield receives_again
    receives_again()


@dataclasses.dataclass
class InDoubt:
    """A paid subscription whose refund was asked for while the provider missed it."""

    subscription: dict[str, Any]
    payment: dict[str, Any]
    refund: dict[str, Any]
    asked_at: datetime


async def refund_in_doubt(suite: Suite, user: User) -> InDoubt:
    """Subscribe and pay, then ask for a refund half an hour later while the provider misses
    it: a 503, then the retry with the same key finds the refund pending."""
    subscription, payment = await paid_subscription(suite, user)
    asked_at = at(payment["paid_at"]) + timedelta(minutes=30)
    path = f"/api/v1/payments/{payment['id']}/refund"
    key = {"Idempotency-Key": "refund-in-doubt"}
    with clock.frozen(asked_at):
        first = await user.post(path, json={}, headers=key)
        retried = await user.post(path, json={}, headers=key)
    assert first.status_code == 503, first.text
    assert retried.status_code == 201, retried.text
    assert retried.json()["status"] == "pending"
    return InDoubt(subscription, payment, retried.json(), asked_at)


async def refund_statuses(suite: Suite, payment: dict[str, Any]) -> list[tuple[str, str]]:
    async with suite.billing.state.resources.engine.connect() as conn:
        rows = await conn.execute(
            sa.text("SELECT id, status FROM refund WHERE payment_id = :id ORDER BY created_at"),
            {"id": payment["id"]},
        )
        return [(str(row.id), str(row.status)) for row in rows]


class AnswersAbout(GatewayClient):
    """The real gateway for everything but reading a refund, which answers ``status``."""

    status = "pending"
    asked: list[UUID]

    async def get_refund(self, refund_id: UUID, *, refresh: bool = False) -> GatewayRefund:
        self.asked.append(refund_id)
        answer = await super().get_refund(refund_id, refresh=False)
        failure = "declined by the bank" if self.status == "failed" else None
        return dataclasses.replace(answer, status=self.status, failure_message=failure)


@pytest.fixture
def answers_about(suite: Suite) -> Iterator[AnswersAbout]:
    working = suite.billing.state.gateway
    client = AnswersAbout(working.http, working.base_url, working.auth)
    client.asked = []
    suite.billing.state.gateway = client
    yield client
    suite.billing.state.gateway = working


class TestRefundInDoubt:
    async def test_a_refund_the_provider_never_received_is_made_once_and_cancels_the_plan(
        self, suite: Suite, provider_misses_refunds: Callable[[], None]
    ) -> None:
        user = suite.as_user()
        doubt = await refund_in_doubt(suite, user)
        provider_misses_refunds()
        subscription_path = f"/api/v1/subscriptions/{doubt.subscription['id']}"
        assert (await user.get(subscription_path)).json()["status"] == "active"

        too_soon = await run_jobs(suite, doubt.asked_at + timedelta(minutes=5))
        early = await refund_statuses(suite, doubt.payment)
        done = await run_jobs(suite, doubt.asked_at + AFTER)
        again = await run_jobs(suite, doubt.asked_at + AFTER + timedelta(hours=1))

        assert early == [(doubt.refund["id"], "pending")]  # not asked before 15 minutes
        assert [run["reconcile_pending_refunds"] for run in (too_soon, done, again)] == [0, 1, 0]
        assert (await user.get(subscription_path)).json()["status"] == "canceled"
        after = (await user.get(f"/api/v1/payments/{doubt.payment['id']}")).json()
        assert after["status"] == "refunded"
        made = [(doubt.refund["id"], "succeeded")]
        assert await refund_statuses(suite, doubt.payment) == made
        assert await suite.scalar("SELECT count(*) FROM gateway.sandbox_refund") == 1
        postings = "SELECT count(*) FROM ledger_transaction WHERE kind = 'refund'"
        assert await suite.scalar(postings) == 1


class TestRefundStillPending:
    async def test_an_undecided_refund_is_asked_again_after_a_pause_as_long_as_its_age(
        self, suite: Suite, provider_misses_refunds: Callable[[], None], answers_about: AnswersAbout
    ) -> None:
        doubt = await refund_in_doubt(suite, suite.as_user())
        payment, refund = doubt.payment, doubt.refund

        first = doubt.asked_at + AFTER
        await run_jobs(suite, first)
        await run_jobs(suite, first + timedelta(minutes=15))  # its pause is its age: 16 min
        await run_jobs(suite, first + timedelta(minutes=17))
        await run_jobs(suite, first + timedelta(minutes=18))

        assert answers_about.asked == [UUID(refund["id"])] * 2
        assert await refund_statuses(suite, payment) == [(refund["id"], "pending")]

    async def test_a_refund_the_provider_failed_frees_its_money_and_keeps_the_plan(
        self, suite: Suite, provider_misses_refunds: Callable[[], None], answers_about: AnswersAbout
    ) -> None:
        user = suite.as_user()
        doubt = await refund_in_doubt(suite, user)
        subscription, payment, refund = doubt.subscription, doubt.payment, doubt.refund
        answers_about.status = "failed"

        done = await run_jobs(suite, doubt.asked_at + AFTER)

        assert done["reconcile_pending_refunds"] == 1
        assert await refund_statuses(suite, payment) == [(refund["id"], "failed")]
        after = (await user.get(f"/api/v1/payments/{payment['id']}")).json()
        assert (after["status"], after["refunded"]["amount"]) == ("succeeded", 0)
        assert (await user.subscription(subscription["id"]))["status"] == "active"
