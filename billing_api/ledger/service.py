"""The double-entry ledger: every money movement is one balanced, append-only transaction.

Accounts: ``user_wallet:<user>`` (what we owe a user; credits raise the balance),
``provider_clearing:<provider>`` (what a provider collected for us), ``revenue``, ``refunds`` and
``disputes`` (what providers hold back from us while a payer disputes a charge).
Posting is idempotent on ``(kind, reference)``, so a redelivered event never posts twice, and the
database refuses a transaction whose debits and credits differ (checked at commit).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing_api.models import LedgerEntry, LedgerTransaction
from shared import clock
from shared.errors import Conflict

REVENUE = "revenue"
REFUNDS = "refunds"
DISPUTES = "disputes"


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
    """Write one transaction; False (and nothing written) if ``(kind, reference)`` exists."""
    debits = sum(line.amount for line in lines if line.side == "debit")
    credits = sum(line.amount for line in lines if line.side == "credit")
    if debits != credits or not lines:
        raise ValueError(f"unbalanced ledger transaction: {debits} debit vs {credits} credit")
    transaction_id = await session.scalar(
        insert(LedgerTransaction)
        .values(
            kind=kind,
            reference=reference,
            user_id=user_id,
            description=description,
            created_at=clock.now(),
        )
        .on_conflict_do_nothing(index_elements=["kind", "reference"])
        .returning(LedgerTransaction.id)
    )
    if transaction_id is None:
        return False
    await session.execute(
        sa.insert(LedgerEntry),
        [
            {
                "transaction_id": transaction_id,
                "account": line.account,
                "side": line.side,
                "amount": line.amount,
                "currency": currency,
            }
            for line in lines
            if line.amount > 0
        ],
    )
    return True


async def balance(session: AsyncSession, account: str, currency: str) -> int:
    """Credits minus debits of an account (a wallet's spendable balance)."""
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
