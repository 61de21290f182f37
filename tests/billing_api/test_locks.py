"""billing_api.locks: a row is locked and re-read without losing what this transaction did."""

from __future__ import annotations

from uuid import UUID

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
