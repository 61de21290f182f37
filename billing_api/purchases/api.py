"""Single movies bought or rented by the calling user."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from billing_api.deps import CheckoutsDep, CustomerDep, SessionDep
from billing_api.purchases import service
from billing_api.purchases.schemas import PurchaseIn, PurchaseOut
from shared.pagination import Cursor, Limit, Page
from shared.ratelimit import per_user_and_ip

router = APIRouter(prefix="/api/v1/purchases", tags=["purchases"])


@router.post(
    "",
    response_model=PurchaseOut,
    dependencies=[per_user_and_ip("purchase")],
    status_code=status.HTTP_201_CREATED,
    response_description="A new checkout.",
    responses={
        200: {
            "model": PurchaseOut,
            "description": "A checkout for this movie is open already: that one, no new charge.",
        }
    },
)
async def buy(
    body: PurchaseIn,
    response: Response,
    customer: CustomerDep,
    session: SessionDep,
    checkouts: CheckoutsDep,
) -> PurchaseOut:
    """Buy or rent a movie."""
    purchase, created = await service.buy(session, customer, body)
    await checkouts.open(purchase.latest_payment_id)
    if not created:
        response.status_code = status.HTTP_200_OK
    return await service.purchase_out(session, purchase)


@router.get("", response_model=Page[PurchaseOut])
async def list_purchases(
    customer: CustomerDep, session: SessionDep, limit: Limit = 20, cursor: Cursor = None
) -> Page[PurchaseOut]:
    """My purchases, newest first."""
    items, next_cursor = await service.list_purchases(
        session, customer.id, cursor=cursor, limit=limit
    )
    return Page(items=items, next_cursor=next_cursor)
