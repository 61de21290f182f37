"""One pending checkout per thing bought, met by checkouts that race for it.

Each race is played with two real transactions: the first is left open while the second runs
into the one-pending (or one-trial) index and waits for it. The API-level race of twenty
checkouts at once is ``test_checkout.py::TestDuplicates``.
"""

from __future__ import annotations

import asyncio
from uuid import UUID, uuid4

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing_api import demo, locks
from billing_api.customers import Customer
from billing_api.models import PurchaseStatus, Subscription, SubscriptionStatus
from billing_api.payments import pending
from billing_api.payments import service as payments
from billing_api.purchases import service as purchases
from billing_api.purchases.schemas import PurchaseIn
from billing_api.subscriptions import service as subscriptions
from billing_api.subscriptions.schemas import SubscriptionIn
from shared.auth import Principal
from tests import support
from tests.billing_api.conftest import Suite, User
from tests.billing_api.test_refunds import waiting_for_locks


def customer_of(user: User) -> Customer:
    principal = Principal(
        subject=str(user.id), user_id=user.id, email="viewer@example.com", roles=frozenset()
    )
    return Customer(principal, user.id)


def active_trial(user: User, plan_id: UUID) -> Subscription:
    """A trial of ``plan_id`` that started (its checkout was paid) in another transaction."""
    return Subscription(
        user_id=user.id,
        email="viewer@example.com",
        plan_id=plan_id,
        status=SubscriptionStatus.ACTIVE,
        months=1,
        trial=True,
    )


async def counts(suite: Suite) -> tuple[int, int]:
    """(pending subscriptions, payments) over the whole database."""
    waiting = await suite.scalar("SELECT count(*) FROM subscription WHERE status = 'pending'")
    made = await suite.scalar("SELECT count(*) FROM payment")
    return int(waiting), int(made)


class TestCheckoutMeetsAPendingOne:
    async def test_a_checkout_waiting_for_an_uncommitted_one_answers_with_its_payment(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        plan = await suite.plan("basic")
        factory = suite.billing.state.session_factory
        second: asyncio.Task[httpx.Response] | None = None
        try:
            async with factory() as session, session.begin():
                first, created = await subscriptions.subscribe(
                    session,
                    suite.billing.state.settings,
                    customer_of(user),
                    SubscriptionIn(plan_id=plan["id"]),
                )
                assert created
                second = asyncio.create_task(
                    user.post("/api/v1/subscriptions", json={"plan_id": plan["id"]})
                )
                await waiting_for_locks(suite, 1)  # on the one-pending index
            answer = await asyncio.wait_for(second, timeout=15)
        finally:
            if second is not None and not second.done():
                second.cancel()
                await asyncio.gather(second, return_exceptions=True)

        assert answer.status_code == 200, answer.text
        reused = answer.json()
        assert reused["id"] == str(first.id)
        assert reused["latest_payment"]["id"] == str(first.latest_payment_id)
        assert reused["latest_payment"]["checkout_url"]
        again = await user.post("/api/v1/subscriptions", json={"plan_id": plan["id"]})
        assert again.status_code == 200
        assert again.json()["latest_payment"] == reused["latest_payment"]
        assert await counts(suite) == (1, 1)

    async def test_a_purchase_waiting_for_an_uncommitted_one_answers_with_its_payment(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        movie = demo.movie_id("Paper Moons")
        factory = suite.billing.state.session_factory
        second: asyncio.Task[httpx.Response] | None = None
        try:
            async with factory() as session, session.begin():
                first, created = await purchases.buy(
                    session, customer_of(user), PurchaseIn(movie_id=movie)
                )
                assert created
                second = asyncio.create_task(
                    user.post("/api/v1/purchases", json={"movie_id": str(movie)})
                )
                await waiting_for_locks(suite, 1)  # on the one-pending index
            answer = await asyncio.wait_for(second, timeout=15)
        finally:
            if second is not None and not second.done():
                second.cancel()
                await asyncio.gather(second, return_exceptions=True)

        assert answer.status_code == 200, answer.text
        reused = answer.json()
        assert reused["id"] == str(first.id)
        assert reused["latest_payment"]["id"] == str(first.latest_payment_id)
        assert reused["latest_payment"]["checkout_url"]
        assert await suite.scalar("SELECT count(*) FROM purchase") == 1
        assert await suite.scalar("SELECT count(*) FROM payment") == 1

    async def test_two_checkouts_again_after_a_decline_make_one_payment_and_one_redemption(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        plan = await suite.plan("basic")
        body = {"plan_id": plan["id"], "promo_code": "WELCOME15"}
        declined = (await user.post("/api/v1/subscriptions", json=body)).json()
        failed_id = declined["latest_payment"]["id"]
        await suite.pay(declined["latest_payment"]["checkout_url"], "4000000000000002")

        async def payment_failed() -> bool:
            status = await suite.scalar("SELECT status FROM payment WHERE id = :id", id=failed_id)
            return bool(status == "failed")

        await support.eventually(payment_failed, timeout=15)
        factory = suite.billing.state.session_factory
        second: asyncio.Task[httpx.Response] | None = None
        try:
            async with factory() as session, session.begin():
                again, created = await subscriptions.subscribe(
                    session,
                    suite.billing.state.settings,
                    customer_of(user),
                    SubscriptionIn.model_validate(body),
                )
                assert created
                assert str(again.id) == declined["id"]
                retry_id = again.latest_payment_id
                assert str(retry_id) != failed_id
                second = asyncio.create_task(user.post("/api/v1/subscriptions", json=body))
                await waiting_for_locks(suite, 1)  # on the pending subscription's row
            answer = await asyncio.wait_for(second, timeout=15)
        finally:
            if second is not None and not second.done():
                second.cancel()
                await asyncio.gather(second, return_exceptions=True)

        assert answer.status_code == 200, answer.text
        assert answer.json()["id"] == declined["id"]
        assert answer.json()["latest_payment"]["id"] == str(retry_id)
        assert answer.json()["latest_payment"]["checkout_url"]
        assert await counts(suite) == (1, 2)
        assert await suite.scalar("SELECT redemptions FROM promo_code WHERE code='WELCOME15'") == 1
        held = await suite.scalar(
            "SELECT count(*) FROM promo_redemption WHERE status <> 'released'"
        )
        assert held == 1


class TestCheckoutMeetsARowThatIsNoLongerPending:
    async def test_a_purchase_paid_while_another_checkout_of_it_waited_starts_a_new_one(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        movie = demo.movie_id("Paper Moons")
        body = {"movie_id": str(movie)}
        first = (await user.post("/api/v1/purchases", json=body)).json()
        factory = suite.billing.state.session_factory
        second: asyncio.Task[httpx.Response] | None = None
        try:
            async with factory() as session, session.begin():
                held = await locks.lock_purchase(session, UUID(first["id"]))
                assert held is not None
                second = asyncio.create_task(user.post("/api/v1/purchases", json=body))
                await waiting_for_locks(suite, 1)  # on the pending purchase's row
                held.status = PurchaseStatus.COMPLETED  # paid meanwhile
            answer = await asyncio.wait_for(second, timeout=15)
        finally:
            if second is not None and not second.done():
                second.cancel()
                await asyncio.gather(second, return_exceptions=True)

        assert answer.status_code == 201, answer.text
        started = answer.json()
        assert started["id"] != first["id"]
        assert started["status"] == "pending"
        assert started["latest_payment"]["id"] != first["latest_payment"]["id"]
        assert started["latest_payment"]["checkout_url"]
        statuses = await suite.scalar(
            "SELECT string_agg(status, ',' ORDER BY created_at) FROM purchase"
        )
        assert statuses == "completed,pending"
        assert await suite.scalar("SELECT count(*) FROM payment") == 2

    async def test_a_trial_that_started_while_the_checkout_waited_is_refused_as_used(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        plan = await suite.plan("premium")
        factory = suite.billing.state.session_factory
        second: asyncio.Task[httpx.Response] | None = None
        try:
            async with factory() as session, session.begin():
                session.add(active_trial(user, UUID(plan["id"])))
                await session.flush()
                second = asyncio.create_task(
                    user.post("/api/v1/subscriptions", json={"plan_id": plan["id"], "trial": True})
                )
                await waiting_for_locks(suite, 1)  # on the one-trial index
            answer = await asyncio.wait_for(second, timeout=15)
        finally:
            if second is not None and not second.done():
                second.cancel()
                await asyncio.gather(second, return_exceptions=True)

        assert answer.status_code == 409, answer.text
        assert answer.json()["error"] == "TrialAlreadyUsed"
        assert await counts(suite) == (0, 0)

    async def test_a_row_that_is_never_found_pending_is_refused_after_a_bounded_number_of_tries(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        plan_id = UUID((await suite.plan("premium"))["id"])
        factory = suite.billing.state.session_factory
        async with factory() as session, session.begin():
            session.add(active_trial(user, plan_id))
        checks = 0

        async def check() -> None:
            nonlocal checks
            checks += 1

        async def order(subscription: Subscription) -> payments.Order:
            raise AssertionError("no payment is made for a checkout that was refused")

        async def start(session: AsyncSession) -> None:
            await pending.start_or_reuse(
                session,
                customer_of(user),
                Subscription,
                # Meets the active trial on the one-trial index every time.
                insert=insert(Subscription)
                .values(id=uuid4(), user_id=user.id, plan_id=plan_id, status="pending", trial=True)
                .on_conflict_do_nothing()
                .returning(Subscription.id),
                pending=sa.select(Subscription).where(
                    Subscription.user_id == user.id,
                    Subscription.plan_id == plan_id,
                    Subscription.status == SubscriptionStatus.PENDING,
                ),
                order=order,
                method="card",
                check=check,
            )

        async with factory() as session, session.begin():
            with pytest.raises(pending.CheckoutContended) as refused:
                await start(session)

        assert (
            refused.value.status_code == 503
        )  # retried by the client, the Idempotency-Key released
        assert checks == pending.ATTEMPTS == 3
        assert await counts(suite) == (0, 0)
