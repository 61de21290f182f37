"""Payments and ledger lines of a period as CSV, streamed: rows come from a server-side cursor
in batches and leave as they are written, so an export of any size holds one batch in memory.

Every field is quoted when it needs to be (commas, quotes, line breaks: RFC 4180). A text
field a person wrote or that came from outside (descriptions, emails) that starts with ``=``,
``+``, ``-``, ``@``, a tab or a carriage return gets a leading ``'``, so a spreadsheet opening
the file shows it as text instead of running it as a formula. Amounts are integers in minor
units, as everywhere else, next to the currency.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing_api.models import LedgerEntry, LedgerTransaction, Payment
from billing_api.reports.period import Period

BATCH = 1000

Rows = sa.Select[*tuple[Any, ...]]
"""A select of any columns: the rows of one export."""
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

PAYMENT_COLUMNS = (
    "id",
    "created_at",
    "paid_at",
    "status",
    "purpose",
    "method",
    "amount",
    "refunded_amount",
    "currency",
    "user_id",
    "email",
    "subscription_id",
    "purchase_id",
    "plan_id",
    "provider",
    "description",
)
LEDGER_COLUMNS = (
    "transaction_id",
    "created_at",
    "kind",
    "reference",
    "user_id",
    "description",
    "entry_id",
    "account",
    "side",
    "amount",
    "currency",
)
FREE_TEXT = frozenset({"email", "description", "reference"})


def _cell(name: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    text = str(value)
    if name in FREE_TEXT and text.startswith(FORMULA_STARTS):
        return "'" + text
    return text


def _chunk(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerows(
        [_cell(name, value) for name, value in zip(columns, row, strict=True)] for row in rows
    )
    return buffer.getvalue()


def payments_query(period: Period, currency: str) -> Rows:
    """Every payment created in the period (each attempt, whatever its outcome), oldest first."""
    return (
        sa.select(*(getattr(Payment, name) for name in PAYMENT_COLUMNS))
        .where(
            Payment.created_at >= period.start,
            Payment.created_at < period.end,
            Payment.currency == currency,
        )
        .order_by(Payment.created_at, Payment.id)
    )


def ledger_query(period: Period, currency: str) -> Rows:
    """Every ledger line of the transactions made in the period, in the order they were made."""
    return (
        sa.select(
            LedgerTransaction.id,
            LedgerTransaction.created_at,
            LedgerTransaction.kind,
            LedgerTransaction.reference,
            LedgerTransaction.user_id,
            LedgerTransaction.description,
            LedgerEntry.id,
            LedgerEntry.account,
            LedgerEntry.side,
            LedgerEntry.amount,
            LedgerEntry.currency,
        )
        .join(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
        .where(
            LedgerTransaction.created_at >= period.start,
            LedgerTransaction.created_at < period.end,
            LedgerEntry.currency == currency,
        )
        .order_by(LedgerTransaction.created_at, LedgerTransaction.id, LedgerEntry.id)
    )


async def stream_csv(
    sessions: async_sessionmaker[AsyncSession], columns: Sequence[str], query: Rows
) -> AsyncIterator[str]:
    """The header, then the rows in batches of :data:`BATCH`, read through a server-side
    cursor in one read-only transaction of its own (the request's session is closed by the
    time the body is sent)."""
    yield _chunk(columns, [columns])
    async with sessions() as session, session.begin():
        await session.execute(sa.text("SET TRANSACTION READ ONLY"))
        result = await session.stream(query.execution_options(yield_per=BATCH))
        async for batch in result.partitions():
            yield _chunk(columns, batch)
