"""The wallet (a balance derived from the ledger) and the user's statement."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from billing_api.config import BillingSettings
from billing_api.customers import Customer
from billing_api.ledger import service as ledger
from billing_api.models import LedgerEntry, LedgerTransaction, Payment
from billing_api.payments import pending
from billing_api.payments import service as payments
from billing_api.wallet.schemas import (
    StatementEntry,
    StatementLine,
    TopUpIn,
    TopUpOut,
    WalletOut,
)
from shared.money import Money, format_minor_units
from shared.pagination import newest_first, page_of


async def wallet(session: AsyncSession, user_id: UUID, default_currency: str) -> WalletOut:
    """The balances derived from the ledger.

    A disputed top-up is taken out of the balance (see :mod:`billing_api.refunds.provider_side`);
    if part of it was spent already the ledger balance is below zero, shown as ``owed`` (and a
    balance of 0), never as a smaller balance that hides it.
    """
    account = ledger.wallet_account(user_id)
    currencies = set(
        await session.scalars(
            sa.select(LedgerEntry.currency).where(LedgerEntry.account == account).distinct()
        )
    ) | {default_currency}
    balances: list[Money] = []
    owed: list[Money] = []
    for currency in sorted(currencies):
        amount = await ledger.balance(session, account, currency)
        balances.append(Money(amount=max(amount, 0), currency=currency))
        if amount < 0:
            owed.append(Money(amount=-amount, currency=currency))
    frozen = await session.execute(
        sa.select(LedgerEntry.currency, sa.func.sum(LedgerEntry.amount))
        .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        .where(
            LedgerEntry.account == account,
            LedgerEntry.side == "debit",
            LedgerTransaction.kind == "dispute",
        )
        .group_by(LedgerEntry.currency)
        .order_by(LedgerEntry.currency)
    )
    return WalletOut(
        balances=balances,
        owed=owed,
        frozen=[Money(amount=int(total), currency=currency) for currency, total in frozen],
    )


async def top_up(
    session: AsyncSession, settings: BillingSettings, customer: Customer, request: TopUpIn
) -> Payment:
    """A card payment into the wallet, for the route to open at the gateway after the commit.

    A top-up of the same amount whose checkout the gateway never opened (its first request got
    503) is handed out again instead of a new one: retrying never leaves two top-ups to pay.
    """
    currency = request.currency or settings.default_currency
    return await pending.start_or_reuse_unopened(
        session,
        customer,
        payments.Order(
            purpose="top_up",
            description=f"Wallet top-up {format_minor_units(request.amount, currency)} {currency}",
            amount=request.amount,
            base_amount=request.amount,
            currency=currency,
        ),
    )


def top_up_out(payment: Payment) -> TopUpOut:
    brief = payments.brief(payment)
    assert brief is not None
    return TopUpOut(payment=brief)


async def statement(
    session: AsyncSession,
    user_id: UUID,
    *,
    since: datetime | None,
    until: datetime | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[StatementEntry], str | None]:
    query = sa.select(LedgerTransaction).where(LedgerTransaction.user_id == user_id)
    if since is not None:
        query = query.where(LedgerTransaction.created_at >= since)
    if until is not None:
        query = query.where(LedgerTransaction.created_at < until)
    rows = (
        await session.scalars(
            newest_first(query, LedgerTransaction.created_at, LedgerTransaction.id, cursor, limit)
        )
    ).all()
    transactions, next_cursor = page_of(rows, limit)
    lines: dict[UUID, list[StatementLine]] = defaultdict(list)
    entries = await session.scalars(
        sa.select(LedgerEntry)
        .where(LedgerEntry.transaction_id.in_([t.id for t in transactions]))
        .order_by(LedgerEntry.id)
    )
    for entry in entries:
        lines[entry.transaction_id].append(
            StatementLine(
                account=entry.account,
                side=entry.side,
                amount=Money(amount=entry.amount, currency=entry.currency),
            )
        )
    return [
        StatementEntry(
            id=t.id,
            kind=t.kind,
            reference=t.reference,
            description=t.description,
            created_at=t.created_at,
            lines=lines[t.id],
        )
        for t in transactions
    ], next_cursor
