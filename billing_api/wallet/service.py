"""The wallet (a balance derived from the ledger) and the user's statement."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from billing_api.config import BillingSettings
from billing_api.deps import Customer
from billing_api.gateway import GatewayClient
from billing_api.ledger import service as ledger
from billing_api.models import LedgerEntry, LedgerTransaction
from billing_api.payments import service as payments
from billing_api.wallet.schemas import StatementEntry, StatementLine, TopUpIn, TopUpOut, WalletOut
from shared.money import Money, format_minor_units
from shared.pagination import newest_first, page_of


async def wallet(session: AsyncSession, user_id: UUID, default_currency: str) -> WalletOut:
    account = ledger.wallet_account(user_id)
    currencies = set(
        await session.scalars(
            sa.select(LedgerEntry.currency).where(LedgerEntry.account == account).distinct()
        )
    ) | {default_currency}
    return WalletOut(
        balances=[
            Money(amount=await ledger.balance(session, account, currency), currency=currency)
            for currency in sorted(currencies)
        ]
    )


async def top_up(
    session: AsyncSession,
    gateway: GatewayClient,
    settings: BillingSettings,
    customer: Customer,
    request: TopUpIn,
) -> TopUpOut:
    currency = request.currency or settings.default_currency
    payment = await payments.start_payment(
        session,
        gateway,
        settings,
        customer,
        payments.Order(
            purpose="top_up",
            description=f"Wallet top-up {format_minor_units(request.amount, currency)} {currency}",
            amount=request.amount,
            base_amount=request.amount,
            currency=currency,
        ),
        method="card",
    )
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
