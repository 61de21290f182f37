"""billing_api.ledger: postings collected for a group are written once, balanced, never twice."""

from __future__ import annotations

from uuid import uuid4

from billing_api.ledger import service as ledger
from tests.billing_api.conftest import Suite


async def transactions(suite: Suite, reference: str) -> int:
    return int(
        await suite.scalar(
            "SELECT count(*) FROM ledger_transaction WHERE reference = :r", r=reference
        )
    )


class TestCollected:
    async def test_postings_of_a_block_are_written_at_its_end_once_each(self, suite: Suite) -> None:
        user_id = uuid4()
        wallet = ledger.wallet_account(user_id)
        sessions = suite.billing.state.resources.session_factory
        posted_before, posted_twice, posted_once = (str(uuid4()) for _ in range(3))

        async def top_up(session: object, reference: str, amount: int) -> None:
            await ledger.post(
                session,  # type: ignore[arg-type]
                kind="wallet_top_up",
                reference=reference,
                user_id=user_id,
                description="top-up",
                currency="RUB",
                lines=ledger.transfer(ledger.clearing_account("sandbox"), wallet, amount),
            )

        async with sessions() as session, session.begin():
            await top_up(session, posted_before, 100)
        async with sessions() as session, session.begin():
            async with ledger.collected(session):
                await top_up(session, posted_before, 100)  # already there: left out
                await top_up(session, posted_twice, 200)
                await top_up(session, posted_twice, 200)  # a repeat in the block: left out
                await top_up(session, posted_once, 300)
                assert await ledger.balance(session, wallet, "RUB") == 600
                await top_up(session, str(uuid4()), 400)
            assert await ledger.balance(session, wallet, "RUB") == 1000

        for reference in (posted_before, posted_twice, posted_once):
            assert await transactions(suite, reference) == 1
        balances = await suite.scalar(
            "SELECT count(*) FROM (SELECT transaction_id FROM ledger_entry GROUP BY 1"
            " HAVING sum(CASE side WHEN 'debit' THEN amount ELSE -amount END) <> 0) AS t"
        )
        assert balances == 0
