"""The calling user's wallet and statement."""

from __future__ import annotations

from fastapi import APIRouter, status

from billing_api.deps import CheckoutsDep, CustomerDep, SessionDep, SettingsDep
from billing_api.wallet import service
from billing_api.wallet.schemas import StatementEntry, TopUpIn, TopUpOut, WalletOut
from shared.pagination import Cursor, Limit, Page, Since, Until
from shared.ratelimit import per_user_and_ip

router = APIRouter(prefix="/api/v1", tags=["wallet"])


@router.get("/wallet", response_model=WalletOut)
async def get_wallet(
    customer: CustomerDep, session: SessionDep, settings: SettingsDep
) -> WalletOut:
    """My wallet balances."""
    return await service.wallet(session, customer.id, settings.default_currency)


@router.post(
    "/wallet/top-ups",
    response_model=TopUpOut,
    status_code=status.HTTP_201_CREATED,
    dependencies=[per_user_and_ip("top_up")],
)
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
