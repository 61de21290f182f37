"""billing_api.locks: a row is locked and re-read without losing what this transaction did."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import sqlalchemy as sa

from billing_api import locks
from billing_api.models import Payment, Subscription
from tests.billing_api.conftest import Suite
from tests.billing_api.test_refunds import paid_subscription


class TestRelock:
    async def test_a_change_not_yet_written_survives_the_re_read(self, suite: Suite) -> None:
        user = suite.as_user()
        _, payment = await paid_subscription(suite, user)
        payment_id = UUID(payment["id"])
        sessions = suite.billing.state.resources.session_factory

        async with sessions() as session, session.begin():
            held = await session.get(Payment, payment_id)
            assert held is not None
            held.description = "named before the lock"
            locked = await locks.lock_payment(session, payment_id)
            assert locked is held
            assert locked.description == "named before the lock"

        stored = await suite.scalar("SELECT description FROM payment WHERE id = :id", id=payment_id)
        assert stored == "named before the lock"

    async def test_what_another_transaction_committed_is_read(self, suite: Suite) -> None:
        user = suite.as_user()
        subscription, _ = await paid_subscription(suite, user)
        subscription_id = UUID(subscription["id"])
        sessions = suite.billing.state.resources.session_factory

        async with sessions() as session, session.begin():
            held = await session.get(Subscription, subscription_id)
            assert held is not None and held.auto_renew
            await suite.execute(
                "UPDATE subscription SET auto_renew = false WHERE id = :id", id=subscription_id
            )
            locked = await locks.lock_subscription(session, subscription_id)
            assert locked is held
            assert not locked.auto_renew


@contextlib.contextmanager
def sent_by(connection: sa.Connection) -> Iterator[list[str]]:
    """Every statement sent on ``connection`` while the block runs."""
    sent: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        sent.append(statement)

    sa.event.listen(connection, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        sa.event.remove(connection, "before_cursor_execute", record)


class TestLockedOnce:
    async def test_a_row_locked_in_this_transaction_is_not_locked_and_read_again(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        subscription, payment = await paid_subscription(suite, user)
        subscription_id, payment_id = UUID(subscription["id"]), UUID(payment["id"])
        sessions = suite.billing.state.resources.session_factory

        async with sessions() as session, session.begin():
            (locked,) = await locks.lock_all(
                session, Subscription, Subscription.id == subscription_id
            )
            locked.auto_renew = False  # this transaction's change, not written yet
            connection = (await session.connection()).sync_connection
            assert connection is not None
            with sent_by(connection) as sent:
                again = await locks.lock_payment(session, payment_id)
                assert again is not None
                assert await locks.lock_subscription(session, subscription_id) is locked
                assert await locks.relock(session, Payment, payment_id) is again
            # Only the payment, not locked before, is locked (once); the subscription is not.
            (lock,) = [statement for statement in sent if "FOR UPDATE" in statement]
            assert "FROM billing.payment" in lock
            assert not locked.auto_renew

        assert not await suite.scalar(
            "SELECT auto_renew FROM subscription WHERE id = :id", id=subscription_id
        )

    async def test_the_next_transaction_locks_and_reads_the_row_again(self, suite: Suite) -> None:
        user = suite.as_user()
        subscription, _ = await paid_subscription(suite, user)
        subscription_id = UUID(subscription["id"])
        sessions = suite.billing.state.resources.session_factory

        async with sessions() as session:
            async with session.begin():
                held = await locks.lock_subscription(session, subscription_id)
                assert held is not None and held.auto_renew
            await suite.execute(
                "UPDATE subscription SET auto_renew = false WHERE id = :id", id=subscription_id
            )
            async with session.begin():
                locked = await locks.lock_subscription(session, subscription_id)
                assert locked is held
                assert not locked.auto_renew
