"""A page of subscriptions or purchases costs the same number of statements however many rows it
holds: each row's latest payment is read with the others in one query, not one query per row."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any
from uuid import UUID, uuid4

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from billing_api.models import Movie, Payment, Plan, Purchase, Subscription, SubscriptionStatus
from billing_api.purchases import service as purchases
from billing_api.subscriptions import service as subscriptions
from shared import clock

Db = tuple[AsyncEngine, async_sessionmaker[AsyncSession]]
PAGE = 20  # larger than every page below: each is read whole


@pytest.fixture
async def session(billing_db: Db) -> AsyncIterator[AsyncSession]:
    """A session whose rows are never committed: the test's transaction is rolled back."""
    _, sessions = billing_db
    async with sessions() as session:
        yield session
        await session.rollback()


@contextlib.contextmanager
def counting_statements(engine: AsyncEngine, session_connection: Any) -> Iterator[list[str]]:
    """Record every statement sent on the session's connection while the block runs (and only
    on it: other tests' or background work on the same engine is not counted)."""
    sent: list[str] = []

    def record(connection: Any, cursor: Any, statement: str, *args: Any) -> None:
        if connection is session_connection:
            sent.append(statement)

    sa.event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        sa.event.remove(engine.sync_engine, "before_cursor_execute", record)


async def statements_of(
    engine: AsyncEngine, session: AsyncSession, read: Callable[[], Awaitable[Any]]
) -> list[str]:
    # The rows were added through this session: forget them, so each payment must be read from
    # the database (an object already in the identity map would hide a query per row).
    session.expunge_all()
    connection = (await session.connection()).sync_connection
    with counting_statements(engine, connection) as sent:
        await read()
    return sent


def payment(user_id: UUID, *, paid: bool, **paid_for: Any) -> Payment:
    return Payment(
        id=uuid4(),
        user_id=user_id,
        purpose="subscription" if "subscription_id" in paid_for else "purchase",
        method="card",
        status="succeeded" if paid else "pending",
        amount=29900,
        base_amount=29900,
        currency="RUB",
        description="a payment of a listed row",
        checkout_url=None if paid else "https://gateway.test/checkout/x",
        paid_at=clock.now() if paid else None,
        **paid_for,
    )


async def add_subscriptions(session: AsyncSession, count: int, *, unpaid: int = 0) -> UUID:
    """A user with ``count`` subscriptions: each with a latest payment (alternately paid and
    pending) but the last ``unpaid``, which have none yet."""
    user_id = uuid4()
    plan = Plan(
        id=uuid4(), code=f"list-{uuid4().hex[:12]}", name="List", price_amount=299, currency="RUB"
    )
    session.add(plan)
    await session.flush()
    for n in range(count):
        subscription = Subscription(
            id=uuid4(), user_id=user_id, plan_id=plan.id, status=SubscriptionStatus.ACTIVE
        )
        session.add(subscription)
        await session.flush()
        if n < count - unpaid:
            latest = payment(user_id, paid=n % 2 == 0, subscription_id=subscription.id)
            session.add(latest)
            subscription.latest_payment_id = latest.id
    await session.flush()
    return user_id


async def add_purchases(session: AsyncSession, count: int, *, unpaid: int = 0) -> UUID:
    """A user with ``count`` purchases of as many movies, paid like :func:`add_subscriptions`."""
    user_id = uuid4()
    for n in range(count):
        movie = Movie(id=uuid4(), title=f"Listed movie {n}", currency="RUB")
        purchase = Purchase(id=uuid4(), user_id=user_id, movie_id=movie.id, kind="buy")
        session.add_all([movie, purchase])
        await session.flush()
        if n < count - unpaid:
            latest = payment(user_id, paid=n % 2 == 0, purchase_id=purchase.id)
            session.add(latest)
            purchase.latest_payment_id = latest.id
    await session.flush()
    return user_id


class TestListSubscriptions:
    async def test_a_page_of_ten_costs_the_statements_of_a_page_of_one(
        self, billing_db: Db, session: AsyncSession
    ) -> None:
        engine, _ = billing_db
        one, ten = await add_subscriptions(session, 1), await add_subscriptions(session, 10)

        def page_of(user_id: UUID) -> Callable[[], Awaitable[Any]]:
            return lambda: subscriptions.list_subscriptions(
                session, user_id, cursor=None, limit=PAGE
            )

        for_one = await statements_of(engine, session, page_of(one))
        for_ten = await statements_of(engine, session, page_of(ten))
        assert len(for_ten) == len(for_one), for_ten

    async def test_each_row_shows_its_own_latest_payment_like_reading_it_alone(
        self, session: AsyncSession
    ) -> None:
        user_id = await add_subscriptions(session, 6, unpaid=2)
        session.expunge_all()

        items, _ = await subscriptions.list_subscriptions(session, user_id, cursor=None, limit=PAGE)

        alone = [await subscriptions.get_subscription(session, user_id, s.id) for s in items]
        assert items == alone
        shown = [s.latest_payment for s in items]
        assert sum(p is None for p in shown) == 2
        assert {p.status for p in shown if p is not None} == {"succeeded", "pending"}


class TestListPurchases:
    async def test_a_page_of_ten_costs_the_statements_of_a_page_of_one(
        self, billing_db: Db, session: AsyncSession
    ) -> None:
        engine, _ = billing_db
        one, ten = await add_purchases(session, 1), await add_purchases(session, 10)

        def page_of(user_id: UUID) -> Callable[[], Awaitable[Any]]:
            return lambda: purchases.list_purchases(session, user_id, cursor=None, limit=PAGE)

        for_one = await statements_of(engine, session, page_of(one))
        for_ten = await statements_of(engine, session, page_of(ten))
        assert len(for_ten) == len(for_one), for_ten

    async def test_each_row_shows_its_own_latest_payment_like_reading_it_alone(
        self, session: AsyncSession
    ) -> None:
        user_id = await add_purchases(session, 6, unpaid=2)
        session.expunge_all()

        items, _ = await purchases.list_purchases(session, user_id, cursor=None, limit=PAGE)

        alone = []
        for item in items:
            purchase = await session.get(Purchase, item.id)
            assert purchase is not None
            alone.append(await purchases.purchase_out(session, purchase))
        assert items == alone
        shown = [p.latest_payment for p in items]
        assert sum(p is None for p in shown) == 2
        assert {p.status for p in shown if p is not None} == {"succeeded", "pending"}
