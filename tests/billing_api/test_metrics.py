"""What billing-api's /metrics reports about renewals and reconciliation (the rows the worker
leaves behind), which the renewal failure rate and reconciliation alerts read."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from types import SimpleNamespace
from typing import cast
from uuid import UUID, uuid4

import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from billing_api.metrics import read_billing_state
from billing_api.models import Payment
from shared import clock
from shared.resources import Resources

Db = tuple[AsyncEngine, async_sessionmaker[AsyncSession]]


def gauge(name: str, **labels: str) -> float:
    value = REGISTRY.get_sample_value(name, labels)
    assert value is not None, f"{name}{labels} is not exported"
    return value


def payment(purpose: str, status: str, age: timedelta) -> Payment:
    return Payment(
        id=uuid4(),
        user_id=uuid4(),
        purpose=purpose,
        method="card",
        status=status,
        amount=29900,
        base_amount=29900,
        currency="RUB",
        description="a payment the metrics count",
        created_at=clock.now() - age,
    )


@pytest.fixture
async def committed(billing_db: Db) -> AsyncIterator[list[UUID]]:
    """Ids of payments the test commits (the probe reads committed rows); deleted afterwards."""
    engine, _ = billing_db
    ids: list[UUID] = []
    yield ids
    async with engine.begin() as conn:
        await conn.execute(sa.delete(Payment).where(Payment.id.in_(ids)))


async def add(billing_db: Db, ids: list[UUID], *payments: Payment) -> None:
    _, sessions = billing_db
    async with sessions() as session:
        session.add_all(payments)
        await session.commit()
    ids.extend(p.id for p in payments)


async def read(billing_db: Db) -> None:
    engine, _ = billing_db
    await read_billing_state(cast(Resources, SimpleNamespace(engine=engine)))


class TestRenewals:
    async def test_the_last_hour_s_renewals_are_counted_by_outcome(
        self, billing_db: Db, committed: list[UUID]
    ) -> None:
        await read(billing_db)
        before = {
            o: gauge("billing_renewals_last_hour", outcome=o) for o in ("failed", "succeeded")
        }
        minute = timedelta(minutes=1)
        await add(
            billing_db,
            committed,
            payment("renewal", "failed", minute),
            payment("renewal", "expired", minute),
            # paid, then disputed: a success still (a plain one would take a receipt number,
            # which the database never gives back, and the test deletes its rows)
            payment("renewal", "disputed", minute),
            payment("renewal", "failed", timedelta(hours=2)),  # before the window
            payment("subscription", "failed", minute),  # a checkout, not a renewal
        )
        await read(billing_db)
        assert gauge("billing_renewals_last_hour", outcome="failed") == before["failed"] + 2
        assert gauge("billing_renewals_last_hour", outcome="succeeded") == before["succeeded"] + 1


class TestReconciliation:
    async def test_card_payments_pending_over_a_quarter_hour_are_the_backlog(
        self, billing_db: Db, committed: list[UUID]
    ) -> None:
        await read(billing_db)
        before = gauge("billing_reconcile_backlog_payments")
        await add(
            billing_db,
            committed,
            payment("subscription", "pending", timedelta(hours=3)),
            payment("subscription", "pending", timedelta(minutes=5)),  # still young
            payment("subscription", "failed", timedelta(hours=3)),  # settled
        )
        await read(billing_db)
        assert gauge("billing_reconcile_backlog_payments") == before + 1
        assert gauge("billing_reconcile_oldest_pending_age_seconds") >= 3 * 3600
