"""Receipt numbers: given in the transaction that moves the money, gapless and unique per year."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import sqlalchemy as sa

from billing_api import demo
from billing_api.models import Payment, PaymentStatus
from tests import support
from tests.billing_api.conftest import Suite, User


def year() -> int:
    return datetime.now(UTC).year


async def receipts(suite: Suite) -> list[Any]:
    async with suite.billing.state.resources.engine.connect() as conn:
        return list(
            (
                await conn.execute(
                    sa.text(
                        "SELECT number, year, sequence, kind, payment_id, refund_id"
                        " FROM receipt ORDER BY sequence"
                    )
                )
            ).all()
        )


async def receipt_of(suite: Suite, payment_id: str | UUID) -> str | None:
    number = await suite.scalar(
        "SELECT number FROM receipt WHERE payment_id = :id", id=UUID(str(payment_id))
    )
    return None if number is None else str(number)


async def open_top_up(user: User, amount: int) -> dict[str, Any]:
    response = await user.post("/api/v1/wallet/top-ups", json={"amount": amount})
    assert response.status_code == 201, response.text
    payment: dict[str, Any] = response.json()["payment"]
    return payment


async def balance(user: User) -> int:
    balances = (await user.get("/api/v1/wallet")).json()["balances"]
    return sum(int(b["amount"]) for b in balances)


async def pay_top_up(suite: Suite, user: User, amount: int) -> dict[str, Any]:
    payment = await open_top_up(user, amount)
    paid = await suite.pay(payment["checkout_url"])
    assert paid.json()["status"] == "succeeded", paid.text

    async def credited() -> bool:
        return await balance(user) >= amount

    await support.eventually(credited, timeout=30)
    return payment


def numbered(sequence: int) -> str:
    return f"{year()}-{sequence:06d}"


class TestRolledBack:
    async def test_a_rolled_back_success_consumes_no_number(self, suite: Suite) -> None:
        user = suite.as_user()
        first = await pay_top_up(suite, user, 10000)
        second = await open_top_up(user, 20000)
        engine = suite.billing.state.resources.engine
        async with engine.connect() as conn:
            transaction = await conn.begin()
            await conn.execute(
                sa.text("UPDATE payment SET status = 'succeeded' WHERE id = :id"),
                {"id": UUID(second["id"])},
            )
            # Fire the deferred trigger now, inside the transaction: it numbers the payment...
            await conn.execute(sa.text("SET CONSTRAINTS ALL IMMEDIATE"))
            inside = await conn.scalar(
                sa.text("SELECT number FROM receipt WHERE payment_id = :id"),
                {"id": UUID(second["id"])},
            )
            assert inside == numbered(2)
            await transaction.rollback()  # ...and the rollback takes the number back
        assert await receipt_of(suite, second["id"]) is None

        third = await pay_top_up(suite, user, 30000)
        assert await receipt_of(suite, first["id"]) == numbered(1)
        assert await receipt_of(suite, third["id"]) == numbered(2)


class TestOrderOfCommits:
    async def test_numbers_follow_commits_and_an_open_transaction_holds_back_no_one(
        self, suite: Suite
    ) -> None:
        user = suite.as_user()
        first, second = await open_top_up(user, 1000), await open_top_up(user, 2000)
        engine = suite.billing.state.resources.engine
        succeed = sa.text("UPDATE payment SET status = 'succeeded' WHERE id = :id")
        async with engine.connect() as slow, engine.connect() as quick:
            slow_transaction = await slow.begin()
            await slow.execute(succeed, {"id": UUID(first["id"])})  # left open meanwhile
            async with quick.begin():
                await quick.execute(succeed, {"id": UUID(second["id"])})
            # The quick one committed (no wait for the open one) and took the first number.
            assert await receipt_of(suite, second["id"]) == numbered(1)
            await slow_transaction.commit()
        assert await receipt_of(suite, first["id"]) == numbered(2)


class TestOneTransaction:
    async def test_a_payment_succeeding_twice_in_one_transaction_is_numbered_once(
        self, suite: Suite
    ) -> None:
        payment_id = uuid4()
        async with suite.billing.state.session_factory() as session, session.begin():
            session.add(
                Payment(
                    id=payment_id,
                    user_id=uuid4(),
                    purpose="top_up",
                    method="card",
                    status=PaymentStatus.SUCCEEDED,
                    amount=5000,
                    currency="RUB",
                    base_amount=5000,
                    description="Wallet top-up",
                )
            )
            await session.flush()
            for status in ("succeeded", "partially_refunded", "succeeded"):
                await session.execute(
                    sa.text("UPDATE payment SET status = :status WHERE id = :id"),
                    {"status": status, "id": payment_id},
                )
        later = await pay_top_up(suite, suite.as_user(), 7000)
        assert [(r.number, r.payment_id) for r in await receipts(suite)] == [
            (numbered(1), payment_id),
            (numbered(2), UUID(later["id"])),
        ]
        assert await suite.scalar("SELECT last_number FROM receipt_counter") == 2

    async def test_a_payment_of_nothing_gets_no_receipt(self, suite: Suite) -> None:
        async with suite.billing.state.session_factory() as session, session.begin():
            session.add(
                Payment(
                    user_id=uuid4(),
                    purpose="trial",
                    method="card",
                    status=PaymentStatus.SUCCEEDED,
                    amount=0,
                    currency="RUB",
                    base_amount=0,
                    description="Trial: card saved",
                )
            )
        assert await receipts(suite) == []


class TestConcurrency:
    async def test_payments_succeeding_concurrently_are_numbered_one_to_n_without_gaps(
        self, suite: Suite
    ) -> None:
        users = [suite.as_user() for _ in range(12)]
        # Card top-ups paid at once: each success is committed by billing's consumer.
        await asyncio.gather(*(pay_top_up(suite, user, 60000) for user in users))
        # Then wallet purchases at once: each request commits its payment already succeeded.
        movies = [demo.movie_id("Paper Moons"), demo.movie_id("Salt and Cedar")]

        async def buy(user: User, movie: UUID) -> None:
            response = await user.post(
                "/api/v1/purchases",
                json={"movie_id": str(movie), "kind": "rent", "payment_method": "wallet"},
            )
            assert response.status_code == 201, response.text

        await asyncio.gather(*(buy(user, movie) for user in users for movie in movies))

        numbers = await receipts(suite)
        assert len(numbers) == 36
        assert [r.sequence for r in numbers] == list(range(1, 37))
        assert len({r.number for r in numbers}) == 36
        assert {r.year for r in numbers} == {year()}
        assert len({r.payment_id for r in numbers}) == 36
        captured = await suite.scalar(
            "SELECT count(*) FROM payment WHERE status = 'succeeded' AND amount > 0"
        )
        assert captured == 36


class TestLongYear:
    async def test_the_millionth_receipt_of_a_year_is_numbered_and_its_payment_recorded(
        self, suite: Suite
    ) -> None:
        # A busy year: receipt 100000 was given long ago and the counter is at 999999.
        await suite.execute(
            "INSERT INTO receipt_counter (year, last_number) VALUES (:year, 99999)", year=year()
        )
        earlier = await pay_top_up(suite, suite.as_user(), 10000)
        assert await receipt_of(suite, earlier["id"]) == numbered(100000)
        await suite.execute("UPDATE receipt_counter SET last_number = 999999")

        # A card top-up paid at the provider: billing records it (the wallet is credited).
        user = suite.as_user()
        millionth = await pay_top_up(suite, user, 20000)
        assert await balance(user) == 20000
        assert await receipt_of(suite, millionth["id"]) == f"{year()}-1000000"
        after = await pay_top_up(suite, suite.as_user(), 30000)
        assert await receipt_of(suite, after["id"]) == f"{year()}-1000001"


class TestTwoRecorders:
    async def test_a_payment_recorded_as_succeeded_by_two_transactions_is_numbered_once(
        self, suite: Suite
    ) -> None:
        # The gateway's event and the reconciler both record the same capture.
        payment = await open_top_up(suite.as_user(), 4000)
        engine = suite.billing.state.resources.engine
        succeed = sa.text("UPDATE payment SET status = 'succeeded' WHERE id = :id")
        async with engine.connect() as first, engine.connect() as second:
            first_transaction = await first.begin()
            await first.execute(succeed, {"id": UUID(payment["id"])})
            second_transaction = await second.begin()
            waiting = asyncio.create_task(second.execute(succeed, {"id": UUID(payment["id"])}))
            await asyncio.sleep(0.3)
            assert not waiting.done()  # the payment's row lock holds the second one back
            await first_transaction.commit()
            await waiting
            await second_transaction.commit()  # finds the first one's receipt: no error
        later = await pay_top_up(suite, suite.as_user(), 5000)
        assert [(r.number, r.payment_id) for r in await receipts(suite)] == [
            (numbered(1), UUID(payment["id"])),
            (numbered(2), UUID(later["id"])),
        ]
