"""Renewal charges: claimed in batches, charged concurrently, settled in groups; never twice."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from billing_api.config import BillingSettings
from billing_api.gateway import GatewayPayment
from billing_api.lifecycle import renewal_claims, renewals
from billing_api.lifecycle import service as lifecycle
from billing_api.lifecycle.service import LEASE, JobContext
from billing_api.models import Payment
from billing_api.periods import add_months
from shared import clock
from tests import support
from tests.billing_api.conftest import Suite
from tests.billing_api.test_lifecycle import end_of, off_session_charges, subscribed


def context(suite: Suite, at: datetime) -> JobContext:
    settings: BillingSettings = suite.billing.state.settings
    return JobContext(
        suite.billing.state.session_factory, suite.billing.state.gateway, settings, at
    )


async def renewal_payments(suite: Suite) -> dict[UUID, Any]:
    """Renewal payments by subscription id (each subscription must have at most one)."""
    async with suite.billing.state.resources.engine.connect() as conn:
        rows = (
            await conn.exec_driver_sql(
                "SELECT id, subscription_id, status FROM payment WHERE purpose = 'renewal'"
            )
        ).all()
    by_subscription = {row.subscription_id: row for row in rows}
    assert len(by_subscription) == len(rows), "a subscription got two renewal payments"
    return by_subscription


async def period_ends(suite: Suite) -> dict[UUID, datetime]:
    async with suite.billing.state.resources.engine.connect() as conn:
        rows = await conn.exec_driver_sql("SELECT id, current_period_end FROM subscription")
        return {row.id: row.current_period_end for row in rows}


async def captured(suite: Suite) -> int:
    return int(
        await suite.scalar(
            "SELECT count(*) FROM ledger_transaction WHERE kind = 'payment_captured'"
        )
    )


async def due_subscriptions(suite: Suite, count: int) -> tuple[list[dict[str, Any]], datetime]:
    subscriptions = await asyncio.gather(
        *(subscribed(suite, suite.as_user()) for _ in range(count))
    )
    return list(subscriptions), max(end_of(s) for s in subscriptions) - timedelta(minutes=30)


class TestConcurrentPasses:
    async def test_two_passes_over_the_same_due_set_charge_each_renewal_once(
        self, suite: Suite, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Small batches and groups, so the two passes interleave claims, charges and settlements.
        monkeypatch.setattr(renewal_claims, "BATCH", 3)
        monkeypatch.setattr(renewals, "SETTLE_GROUP", 2)
        subscriptions, at = await due_subscriptions(suite, 16)
        captured_before = await captured(suite)

        with clock.frozen(at):
            first, second = await asyncio.gather(
                renewals.renew_due(context(suite, at)), renewals.renew_due(context(suite, at))
            )

        assert first + second == 16
        assert first > 0 and second > 0, "both passes took part"
        assert await off_session_charges(suite) == 16
        payments = await renewal_payments(suite)
        assert {str(s) for s in payments} == {s["id"] for s in subscriptions}
        assert {p.status for p in payments.values()} == {"succeeded"}
        assert await captured(suite) - captured_before == 16
        ends = await period_ends(suite)
        for subscription in subscriptions:
            assert ends[UUID(subscription["id"])] == add_months(end_of(subscription), 1)
        assert len(await suite.events("subscription.renewed")) == 16


class TestInterruptedRun:
    async def test_payments_claimed_by_a_run_that_died_are_charged_once_after_the_lease(
        self, suite: Suite
    ) -> None:
        subscriptions, at = await due_subscriptions(suite, 3)
        with clock.frozen(at):
            claimed = await renewal_claims.claim_renewals(context(suite, at))  # then the run dies
        assert len(claimed) == 3

        during_lease = at + LEASE - timedelta(seconds=1)
        with clock.frozen(during_lease):
            assert await renewals.renew_due(context(suite, during_lease)) == 0
        assert await off_session_charges(suite) == 0

        after_lease = at + LEASE
        with clock.frozen(after_lease):
            assert await renewals.renew_due(context(suite, after_lease)) == 3
        payments = await renewal_payments(suite)
        assert {p.id for p in payments.values()} == {c.payment_id for c in claimed}
        assert {p.status for p in payments.values()} == {"succeeded"}
        assert await off_session_charges(suite) == 3
        ends = await period_ends(suite)
        for subscription in subscriptions:
            assert ends[UUID(subscription["id"])] == add_months(end_of(subscription), 1)


class TestSettlement:
    async def test_a_payment_the_run_cannot_settle_holds_back_no_other_and_its_event_settles_it(
        self, suite: Suite, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        subscriptions, at = await due_subscriptions(suite, 4)
        with clock.frozen(at):
            claimed = await renewal_claims.claim_renewals(context(suite, at))
        # Groups of two, the broken payment in the first: the second group is settled all the same.
        monkeypatch.setattr(renewals, "SETTLE_GROUP", 2)
        broken = min(charge.payment_id for charge in claimed)
        settle = lifecycle.apply_gateway_result

        async def failing_for_one(
            session: AsyncSession, payment: Payment, result: GatewayPayment, **kwargs: Any
        ) -> bool:
            if payment.id == broken:
                raise RuntimeError("a bug in settling one payment")
            return await settle(session, payment, result, **kwargs)

        monkeypatch.setattr(renewals, "apply_gateway_result", failing_for_one)
        after_lease = at + LEASE
        with clock.frozen(after_lease), pytest.raises(ExceptionGroup) as failed:
            await renewals.renew_due(context(suite, after_lease))
        assert failed.group_contains(RuntimeError, match="a bug in settling one payment")

        statuses = {p.id: p.status for p in (await renewal_payments(suite)).values()}
        del statuses[broken]
        assert set(statuses.values()) == {"succeeded"}
        assert await off_session_charges(suite) == 4

        async def settled_by_its_event() -> bool:
            payments = await renewal_payments(suite)
            return bool({p.id: p.status for p in payments.values()}[broken] == "succeeded")

        await support.eventually(settled_by_its_event, timeout=15)
        monkeypatch.setattr(renewals, "apply_gateway_result", settle)
        retry = after_lease + LEASE
        with clock.frozen(retry):
            assert await renewals.renew_due(context(suite, retry)) == 0
        assert await off_session_charges(suite) == 4
        ends = await period_ends(suite)
        for subscription in subscriptions:
            assert ends[UUID(subscription["id"])] == add_months(end_of(subscription), 1)
