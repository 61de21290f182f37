"""Gifts: bought by the calling user, redeemed by any signed-in user who has the code."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, status

from billing_api.deps import CheckoutsDep, CustomerDep, SessionDep, SettingsDep
from billing_api.gifts import redeem as redemption
from billing_api.gifts import service
from billing_api.gifts.schemas import GiftIn, GiftOut, RedeemedOut, RedeemIn
from shared import db
from shared.pagination import Cursor, Limit, Page
from shared.ratelimit import per_user_and_ip

router = APIRouter(prefix="/api/v1/gifts", tags=["gifts"])


@router.post(
    "",
    response_model=GiftOut,
    dependencies=[per_user_and_ip("gift")],
    status_code=status.HTTP_201_CREATED,
    response_description="The gift, pending until paid (card: pay at `latest_payment.checkout_url`;"
    " wallet: paid at once).",
)
async def buy_gift(
    body: GiftIn,
    customer: CustomerDep,
    session: SessionDep,
    settings: SettingsDep,
    checkouts: CheckoutsDep,
) -> GiftOut:
    """Buy months of a plan as a gift for someone's email."""
    gift = await service.buy(session, settings, customer, body)
    await checkouts.open(gift.latest_payment_id)  # the checkout speaks the buyer's language
    return await service.out(session, gift)


@router.get("", response_model=Page[GiftOut])
async def list_gifts(
    customer: CustomerDep, session: SessionDep, limit: Limit = 20, cursor: Cursor = None
) -> Page[GiftOut]:
    """Gifts I bought, newest first, with their codes once paid."""
    items, next_cursor = await service.list_gifts(session, customer.id, cursor=cursor, limit=limit)
    return Page(items=items, next_cursor=next_cursor)


@router.post(
    "/redeem",
    response_model=RedeemedOut,
    dependencies=[per_user_and_ip("gift_redeem")],
    responses={
        404: {"description": "No gift has this code (counted against the wrong-code limit)."},
        409: {"description": "The gift was redeemed already, refunded, revoked or expired."},
        429: {
            "description": "Too many wrong codes, or too many redeems: try again after"
            " `Retry-After` seconds."
        },
    },
)
async def redeem_gift(
    body: RedeemIn, customer: CustomerDep, session: SessionDep, settings: SettingsDep
) -> RedeemedOut:
    """Redeem a gift code: its months go to my subscription of the plan, or start one."""
    try:
        return await redemption.redeem(session, settings, customer, body.code)
    except redemption.GiftCodeNotFound:
        await db.commit(session)  # the wrong code counts, though the answer is an error
        raise


@router.get("/{gift_id:uuid}", response_model=GiftOut)
async def get_gift(gift_id: UUID, customer: CustomerDep, session: SessionDep) -> GiftOut:
    """One gift I bought."""
    return await service.get_own(session, customer.id, gift_id)
