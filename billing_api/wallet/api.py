"""The calling user's wallet and statement."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, status
from pydantic import AfterValidator, BeforeValidator

from billing_api.deps import CheckoutsDep, CustomerDep, SessionDep, SettingsDep
from billing_api.wallet import service
from billing_api.wallet.schemas import StatementEntry, TopUpIn, TopUpOut, WalletOut
from shared.pagination import Cursor, Limit, Page

router = APIRouter(prefix="/api/v1", tags=["wallet"])

_ISO_8601_DATE = re.compile(r"\d{4}-\d{2}-\d{2}(?:[Tt ].+)?")


def _iso_8601(value: object) -> object:
    """Only ISO 8601 text is a moment here: pydantic alone would read ``0.5`` or ``1700000000``
    as a Unix time, which is not what a client means by ``from``/``to`` (422 instead)."""
    if isinstance(value, str) and not _ISO_8601_DATE.fullmatch(value):
        raise ValueError("expected an ISO 8601 date or date-time (2026-01-31, 2026-01-31T12:00Z)")
    return value


def _in_utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


Moment = Annotated[datetime, BeforeValidator(_iso_8601), AfterValidator(_in_utc)]
"""A ``from``/``to`` bound: an ISO 8601 date or date-time; without an offset it is UTC."""

Since = Annotated[
    Moment | None, Query(alias="from", description="Inclusive, ISO 8601 (no offset: UTC).")
]
Until = Annotated[
    Moment | None, Query(alias="to", description="Exclusive, ISO 8601 (no offset: UTC).")
]


@router.get("/wallet", response_model=WalletOut)
async def get_wallet(
    customer: CustomerDep, session: SessionDep, settings: SettingsDep
) -> WalletOut:
    """My wallet balances."""
    return await service.wallet(session, customer.id, settings.default_currency)


@router.post("/wallet/top-ups", response_model=TopUpOut, status_code=status.HTTP_201_CREATED)
async def top_up(
    body: TopUpIn,
    customer: CustomerDep,
    session: SessionDep,
    settings: SettingsDep,
    checkouts: CheckoutsDep,
) -> TopUpOut:
    """Top up the wallet by card; the balance grows when the payment succeeds."""
    payment = await service.top_up(session, settings, customer, body)
    await checkouts.open(payment.id)
    return service.top_up_out(payment)


@router.get("/statement", response_model=Page[StatementEntry])
async def get_statement(
    customer: CustomerDep,
    session: SessionDep,
    since: Since = None,
    until: Until = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[StatementEntry]:
    """My ledger transactions with their balanced lines, newest first."""
    items, next_cursor = await service.statement(
        session, customer.id, since=since, until=until, cursor=cursor, limit=limit
    )
    return Page(items=items, next_cursor=next_cursor)
