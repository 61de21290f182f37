"""Admin routes for customers: who they are, what they have and paid, refunds and gifts."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, status

from billing_api.admin.access import (
    AdminUISettingsDep,
    CareGiver,
    Refunder,
    StaffReader,
    refund_limit_of,
)
from billing_api.admin.audit import service as audit
from billing_api.admin.customers import service
from billing_api.admin.customers.schemas import (
    AdminRefundIn,
    ComplimentaryIn,
    ComplimentaryOut,
    CustomerOut,
    RevokeIn,
)
from billing_api.deps import GatewayDep, SettingsDep
from billing_api.payments import service as payments
from billing_api.payments.schemas import PaymentOut
from billing_api.purchases import service as purchases
from billing_api.purchases.schemas import PurchaseOut
from billing_api.refunds.schemas import RefundOut
from billing_api.subscriptions import service as subscriptions
from billing_api.subscriptions.schemas import SubscriptionOut
from billing_api.wallet import service as wallet
from billing_api.wallet.schemas import StatementEntry, WalletOut
from shared.db import SessionDep
from shared.pagination import Cursor, Limit, Page, Since, Until

router = APIRouter(prefix="/api/v1/admin", tags=["admin: customers"])


@router.get("/users", response_model=Page[CustomerOut])
async def list_customers(
    session: SessionDep,
    principal: StaffReader,
    search: Annotated[str | None, Query(max_length=320, description="Email or id part.")] = None,
    limit: Limit = 50,
    # PostgreSQL's OFFSET is a bigint: a larger one is the client's mistake (422), not a 500.
    offset: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
) -> Page[CustomerOut]:
    """Customers (users with subscriptions or payments), most recently seen first."""
    items = await service.list_customers(session, search=search, limit=limit, offset=offset)
    return Page(items=items)


@router.get("/users/{user_id}/subscriptions", response_model=Page[SubscriptionOut])
async def user_subscriptions(
    user_id: UUID,
    session: SessionDep,
    principal: StaffReader,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> Page[SubscriptionOut]:
    """A user's subscriptions, newest first."""
    items, next_cursor = await subscriptions.list_subscriptions(
        session, user_id, cursor=cursor, limit=limit
    )
    return Page(items=items, next_cursor=next_cursor)


@router.get("/users/{user_id}/purchases", response_model=Page[PurchaseOut])
async def user_purchases(
    user_id: UUID,
    session: SessionDep,
    principal: StaffReader,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> Page[PurchaseOut]:
    """A user's movie purchases and rentals, newest first."""
    items, next_cursor = await purchases.list_purchases(
        session, user_id, cursor=cursor, limit=limit
    )
    return Page(items=items, next_cursor=next_cursor)


@router.get("/users/{user_id}/payments", response_model=Page[PaymentOut])
async def user_payments(
    user_id: UUID,
    session: SessionDep,
    principal: StaffReader,
    since: Since = None,
    until: Until = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> Page[PaymentOut]:
    """A user's payments, newest first, optionally within [from, to)."""
    items, next_cursor = await payments.list_payments(
        session, user_id, since=since, until=until, cursor=cursor, limit=limit
    )
    return Page(items=items, next_cursor=next_cursor)


@router.get("/users/{user_id}/wallet", response_model=WalletOut)
async def user_wallet(
    user_id: UUID, session: SessionDep, settings: SettingsDep, principal: StaffReader
) -> WalletOut:
    """A user's wallet balances (derived from the ledger)."""
    return await wallet.wallet(session, user_id, settings.default_currency)


@router.get("/users/{user_id}/statement", response_model=Page[StatementEntry])
async def user_statement(
    user_id: UUID,
    session: SessionDep,
    principal: StaffReader,
    since: Since = None,
    until: Until = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> Page[StatementEntry]:
    """A user's ledger transactions with their balanced lines."""
    items, next_cursor = await wallet.statement(
        session, user_id, since=since, until=until, cursor=cursor, limit=limit
    )
    return Page(items=items, next_cursor=next_cursor)


@router.get("/users/{user_id}/complimentary", response_model=Page[ComplimentaryOut])
async def user_grants(
    user_id: UUID, session: SessionDep, principal: StaffReader
) -> Page[ComplimentaryOut]:
    """A user's complimentary grants, live or not."""
    return Page(items=await service.list_grants(session, user_id))


@router.post(
    "/users/{user_id}/complimentary",
    response_model=ComplimentaryOut,
    status_code=status.HTTP_201_CREATED,
)
async def grant_complimentary(
    user_id: UUID, body: ComplimentaryIn, session: SessionDep, principal: CareGiver
) -> ComplimentaryOut:
    """Give a user a plan's access for some days at no charge."""
    return await service.grant(session, audit.actor_of(principal), user_id, body)


@router.post("/complimentary/{grant_id}/revoke", response_model=ComplimentaryOut)
async def revoke_complimentary(
    grant_id: UUID, body: RevokeIn, session: SessionDep, principal: CareGiver
) -> ComplimentaryOut:
    """End a complimentary grant now."""
    return await service.revoke(session, audit.actor_of(principal), grant_id, body.reason)


@router.get("/payments/{payment_id}", response_model=PaymentOut)
async def get_any_payment(
    payment_id: UUID, session: SessionDep, principal: StaffReader
) -> PaymentOut:
    """Any user's payment."""
    return await service.get_payment(session, payment_id)


@router.post(
    "/payments/{payment_id}/refund", response_model=RefundOut, status_code=status.HTTP_201_CREATED
)
async def refund_payment(
    payment_id: UUID,
    body: AdminRefundIn,
    session: SessionDep,
    gateway: GatewayDep,
    principal: Refunder,
    ui_settings: AdminUISettingsDep,
    settings: SettingsDep,
) -> RefundOut:
    """Refund a payment with the refund window overridden (everything left, or ``amount``);
    the ``support`` role only up to ``BILLING_ADMIN_SUPPORT_REFUND_LIMIT`` of a payment in
    ``BILLING_DEFAULT_CURRENCY`` (403 above it or in another currency)."""
    actor = audit.actor_of(principal)
    limit = refund_limit_of(principal, ui_settings)
    return await service.refund(
        session,
        gateway,
        actor,
        payment_id,
        body,
        limit=limit,
        limit_currency=settings.default_currency,
    )
