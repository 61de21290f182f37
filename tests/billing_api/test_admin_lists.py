"""The back office's list of promo codes costs the same number of statements however many codes
it shows: every code's redemption counts are read together, not one query per code."""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import UUID, uuid4

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from billing_api.admin.discounts import service as discounts
from billing_api.models import PromoCode, PromoRedemption, PromoRedemptionStatus
from tests.billing_api.test_list_pages import statements_of

Db = tuple[AsyncEngine, async_sessionmaker[AsyncSession]]


@pytest.fixture
async def session(billing_db: Db) -> AsyncIterator[AsyncSession]:
    """A session whose rows are never committed: the test's transaction is rolled back."""
    _, sessions = billing_db
    async with sessions() as session:
        yield session
        await session.rollback()


async def add_codes(session: AsyncSession, count: int) -> list[UUID]:
    """``count`` codes, the n-th with n redemptions: alternately redeemed and reserved."""
    ids = []
    for n in range(count):
        code = PromoCode(id=uuid4(), code=f"LIST{uuid4().hex[:10].upper()}", kind="percent")
        code.percent = 10
        session.add(code)
        await session.flush()
        for k in range(n):
            status = PromoRedemptionStatus.REDEEMED if k % 2 else PromoRedemptionStatus.RESERVED
            session.add(
                PromoRedemption(
                    promo_code_id=code.id, user_id=uuid4(), payment_id=uuid4(), status=status
                )
            )
        ids.append(code.id)
    await session.flush()
    return ids


class TestListPromos:
    async def test_many_codes_cost_as_many_statements_as_one(
        self, billing_db: Db, session: AsyncSession
    ) -> None:
        engine, _ = billing_db
        await add_codes(session, 1)
        one = await statements_of(
            engine, session, lambda: discounts.list_promos(session, active=None)
        )
        ids = await add_codes(session, 9)
        ten = await statements_of(
            engine, session, lambda: discounts.list_promos(session, active=None)
        )

        assert len(ten) == len(one) == 2

        listed = {promo.id: promo for promo in await discounts.list_promos(session, active=None)}
        for n, promo_id in enumerate(ids):
            alone = await discounts.promo_out(session, await session.get_one(PromoCode, promo_id))
            assert listed[promo_id] == alone
            assert (alone.reserved, alone.redeemed) == ((n + 1) // 2, n // 2)
