"""Every status column of billing holds one of its enum's values, and the database refuses any
other: the check is the migration's, so these tests go through the real PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from enum import StrEnum
from typing import Any
from uuid import uuid4

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from billing_api.models import (
    IdempotencyKey,
    IdempotencyKeyStatus,
    Movie,
    Payment,
    PaymentStatus,
    Plan,
    PromoCode,
    PromoRedemption,
    PromoRedemptionStatus,
    Purchase,
    PurchaseStatus,
    Refund,
    RefundStatus,
    Subscription,
    SubscriptionStatus,
)
from shared import clock

Db = tuple[AsyncEngine, async_sessionmaker[AsyncSession]]

STATUS_COLUMNS: list[tuple[type[Any], type[StrEnum]]] = [
    (PromoRedemption, PromoRedemptionStatus),
    (Subscription, SubscriptionStatus),
    (Purchase, PurchaseStatus),
    (Payment, PaymentStatus),
    (Refund, RefundStatus),
    (IdempotencyKey, IdempotencyKeyStatus),
]
IDS = [model.__tablename__ for model, _ in STATUS_COLUMNS]


@pytest.fixture
async def session(billing_db: Db) -> AsyncIterator[AsyncSession]:
    """A transaction rolled back at the end: nothing these tests write stays."""
    async with billing_db[1]() as session:
        await session.begin()
        yield session
        await session.rollback()


async def row_of(session: AsyncSession, model: type[Any]) -> dict[str, Any]:
    """Every column a new row of ``model`` needs but its status (its parents are flushed)."""
    user_id = uuid4()
    plan = Plan(code=f"plan-{uuid4()}", name="Plan", price_amount=100, currency="RUB")
    movie = Movie(id=uuid4(), title="Movie", currency="RUB")
    promo = PromoCode(code=f"PROMO-{uuid4()}", kind="percent", percent=10)
    payment = Payment(
        user_id=user_id,
        purpose="purchase",
        method="card",
        amount=100,
        currency="RUB",
        base_amount=100,
        description="a payment",
    )
    session.add_all([plan, movie, promo, payment])
    await session.flush()
    rows: dict[type[Any], dict[str, Any]] = {
        PromoRedemption: {"promo_code_id": promo.id, "user_id": user_id, "payment_id": uuid4()},
        Subscription: {"user_id": user_id, "plan_id": plan.id},
        Purchase: {"user_id": user_id, "movie_id": movie.id, "kind": "buy"},
        Payment: {
            "user_id": user_id,
            "purpose": "purchase",
            "method": "card",
            "amount": 100,
            "currency": "RUB",
            "base_amount": 100,
            "description": "a payment",
        },
        Refund: {
            "payment_id": payment.id,
            "user_id": user_id,
            "amount": 50,
            "currency": "RUB",
            "rule": "a refund",
        },
        IdempotencyKey: {
            "subject": str(user_id),
            "key": str(uuid4()),
            "method": "POST",
            "path": "/api/v1/purchases",
            "request_hash": "0" * 64,
            "expires_at": clock.now() + timedelta(days=1),
        },
    }
    return rows[model]


class TestStatusColumns:
    @pytest.mark.parametrize(("model", "enum"), STATUS_COLUMNS, ids=IDS)
    async def test_an_unknown_status_is_refused_by_the_database(
        self, session: AsyncSession, model: type[Any], enum: type[StrEnum]
    ) -> None:
        row = await row_of(session, model)
        known = next(iter(enum))
        # The status is written as SQL text, past any check the Python type could make.
        insert = sa.insert(model).values(**row, status=sa.literal_column(f"'{known.value}'"))
        await session.execute(insert)  # the same row with a known status is accepted

        with pytest.raises(IntegrityError, match=f"ck_{model.__tablename__}_status_known"):
            async with session.begin_nested():
                await session.execute(
                    sa.insert(model).values(
                        **await row_of(session, model), status=sa.literal_column("'unheard_of'")
                    )
                )

    @pytest.mark.parametrize(("model", "enum"), STATUS_COLUMNS, ids=IDS)
    async def test_the_database_accepts_exactly_the_enum_values_and_loads_members(
        self, session: AsyncSession, model: type[Any], enum: type[StrEnum]
    ) -> None:
        definition = await session.scalar(
            sa.text(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
                " WHERE conname = :name AND connamespace = 'billing'::regnamespace"
            ),
            {"name": f"ck_{model.__tablename__}_status_known"},
        )
        assert definition is not None
        assert set(re.findall(r"'(\w+)'", definition)) == {member.value for member in enum}

        for member in enum:
            row = await row_of(session, model)
            inserted = await session.execute(
                sa.insert(model).values(**row, status=member.value).returning(model.status)
            )
            loaded = inserted.scalar_one()
            assert loaded is member
