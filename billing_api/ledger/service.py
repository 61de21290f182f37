"""The double-entry ledger: every money movement is one balanced, append-only transaction.

Accounts: ``user_wallet:<user>`` (what we owe a user; credits raise the balance),
``provider_clearing:<provider>`` (what a provider collected for us), ``revenue``, ``refunds``,
``disputes`` (what providers hold back from us while a payer disputes a charge) and
``deferred_revenue:gifts`` (gifts sold and not yet redeemed or expired: owed to whoever redeems
them, recognised as revenue when they are).
Posting is idempotent on ``(kind, reference)``, so a redelivered event never posts twice, and the
database refuses a transaction whose debits and credits differ (checked at commit).

A transaction that settles many payments at once wraps them in :func:`collected`: their postings
are written at the end of the block, one statement per table for all of them (the same rows,
the same idempotency, the same checks), and :func:`balance` writes them first when it is asked
inside the block.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from uuid import UUID, uuid4

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing_api.models import LedgerEntry, LedgerTransaction
from shared import clock
from shared.errors import Conflict

REVENUE = "revenue"
REFUNDS = "refunds"
DISPUTES = "disputes"
GIFTS_DEFERRED = "deferred_revenue:gifts"


class InsufficientFunds(Conflict):
    default_detail = "the wallet balance is lower than the amount"


def wallet_account(user_id: UUID) -> str:
    return f"user_wallet:{user_id}"


def clearing_account(provider: str) -> str:
    return f"provider_clearing:{provider}"


@dataclass(frozen=True)
class Line:
    account: str
    side: Literal["debit", "credit"]
    amount: int


def transfer(source: str, destination: str, amount: int) -> list[Line]:
    """Money moving from ``source`` (debited) to ``destination`` (credited)."""
    return [Line(source, "debit", amount), Line(destination, "credit", amount)]


@dataclass(frozen=True)
class _Posting:
    id: UUID
    kind: str
    reference: str
    user_id: UUID | None
    description: str
    currency: str
    lines: Sequence[Line]
    created_at: datetime


# ``session.info`` key: the postings a :func:`collected` block will write at its end.
_COLLECTED = "ledger.collected"


@asynccontextmanager
async def collected(session: AsyncSession) -> AsyncIterator[None]:
    """Write the postings made inside the block when it ends, in one statement per table.

    For a transaction that settles many payments (a group of renewals). A block that fails
    writes nothing, so its transaction must be rolled back. Inside it the ledger is read only
    through :func:`balance` (or after :func:`write_collected`), which sees every posting made.
    """
    if _COLLECTED in session.info:  # already inside a block: that one writes them
        yield
        return
    session.info[_COLLECTED] = []
    try:
        yield
        await write_collected(session)
    finally:
        del session.info[_COLLECTED]


async def write_collected(session: AsyncSession) -> None:
    """Write now what the enclosing :func:`collected` block has posted so far (for a read of
    the ledger inside it)."""
    pending: list[_Posting] | None = session.info.get(_COLLECTED)
    if pending:
        postings = list(pending)
        pending.clear()
        await _write(session, postings)


async def post(
    session: AsyncSession,
    *,
    kind: str,
    reference: str,
    user_id: UUID | None,
    description: str,
    currency: str,
    lines: Sequence[Line],
) -> bool:
    """Write one transaction; False (and nothing written) if ``(kind, reference)`` exists.
    Inside :func:`collected` it is written at the end of the block (True; still nothing if
    ``(kind, reference)`` exists by then)."""
    debits = sum(line.amount for line in lines if line.side == "debit")
    credits = sum(line.amount for line in lines if line.side == "credit")
    if debits != credits or not lines:
        raise ValueError(f"unbalanced ledger transaction: {debits} debit vs {credits} credit")
    posting = _Posting(uuid4(), kind, reference, user_id, description, currency, lines, clock.now())
    pending: list[_Posting] | None = session.info.get(_COLLECTED)
    if pending is not None:
        pending.append(posting)
        return True
    return bool(await _write(session, [posting]))


async def _write(session: AsyncSession, postings: Sequence[_Posting]) -> set[UUID]:
    """Insert the postings whose ``(kind, reference)`` is new (a repeat, even within
    ``postings``, is left out with its entries); the ids of those written."""
    written = set(
        await session.scalars(
            insert(LedgerTransaction)
            .values(
                [
                    {
                        "id": posting.id,
                        "kind": posting.kind,
                        "reference": posting.reference,
                        "user_id": posting.user_id,
                        "description": posting.description,
                        "created_at": posting.created_at,
                    }
                    for posting in postings
                ]
            )
            .on_conflict_do_nothing(index_elements=["kind", "reference"])
            .returning(LedgerTransaction.id)
        )
    )
    entries = [
        {
            "transaction_id": posting.id,
            "account": line.account,
            "side": line.side,
            "amount": line.amount,
            "currency": posting.currency,
        }
        for posting in postings
        if posting.id in written
        for line in posting.lines
        if line.amount > 0
    ]
    if entries:
        await session.execute(sa.insert(LedgerEntry), entries)
    return written


async def balance(session: AsyncSession, account: str, currency: str) -> int:
    """Credits minus debits of an account (a wallet's spendable balance)."""
    await write_collected(session)
    value = await session.scalar(
        sa.select(
            sa.func.coalesce(
                sa.func.sum(
                    sa.case(
                        (LedgerEntry.side == "credit", LedgerEntry.amount),
                        else_=-LedgerEntry.amount,
                    )
                ),
                0,
            )
        ).where(LedgerEntry.account == account, LedgerEntry.currency == currency)
    )
    return int(value or 0)


async def lock_wallet(session: AsyncSession, user_id: UUID, currency: str) -> None:
    """Serialise spending from one wallet for the rest of the transaction."""
    await session.execute(
        sa.select(
            sa.func.pg_advisory_xact_lock(
                sa.func.hashtextextended(f"wallet:{user_id}:{currency}", 0)
            )
        )
    )


async def spend_from_wallet(
    session: AsyncSession,
    *,
    user_id: UUID,
    amount: int,
    currency: str,
    reference: str,
    description: str,
) -> None:
    """Move ``amount`` from the user's wallet to revenue, or raise :class:`InsufficientFunds`."""
    await lock_wallet(session, user_id, currency)
    available = await balance(session, wallet_account(user_id), currency)
    if available < amount:
        raise InsufficientFunds(f"wallet balance {available} {currency} is lower than {amount}")
    await post(
        session,
        kind="wallet_spend",
        reference=reference,
        user_id=user_id,
        description=description,
        currency=currency,
        lines=transfer(wallet_account(user_id), REVENUE, amount),
    )
