"""The calling user's payments, and the pages a checkout returns to."""

from __future__ import annotations

from html import escape
from uuid import UUID

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from billing_api.deps import CustomerDep, SessionDep
from billing_api.models import Payment, PaymentStatus
from billing_api.payments import service
from billing_api.payments.schemas import PaymentOut
from shared.money import format_minor_units
from shared.pagination import Cursor, Limit, Page, Since, Until

router = APIRouter(prefix="/api/v1/payments", tags=["payments"])
pages = APIRouter(prefix="/checkout", tags=["pages"], include_in_schema=False)


@router.get("", response_model=Page[PaymentOut])
async def list_payments(
    customer: CustomerDep,
    session: SessionDep,
    since: Since = None,
    until: Until = None,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> Page[PaymentOut]:
    """My payments, newest first, optionally within [from, to)."""
    items, next_cursor = await service.list_payments(
        session, customer.id, since=since, until=until, cursor=cursor, limit=limit
    )
    return Page(items=items, next_cursor=next_cursor)


@router.get("/{payment_id}", response_model=PaymentOut)
async def get_payment(payment_id: UUID, customer: CustomerDep, session: SessionDep) -> PaymentOut:
    """One of my payments."""
    return await service.get_payment(session, customer.id, payment_id)


MESSAGES = {
    PaymentStatus.SUCCEEDED: "Payment received — enjoy watching!",
    PaymentStatus.PENDING: "We are confirming your payment. This page will update in a moment.",
    PaymentStatus.FAILED: "The payment did not go through. You can try again.",
    PaymentStatus.EXPIRED: "This checkout has expired. You can start a new one.",
}


@pages.get("/success", response_class=HTMLResponse)
@pages.get("/cancel", response_class=HTMLResponse)
async def checkout_return(payment_id: UUID, session: SessionDep) -> HTMLResponse:
    """Where the payment page sends a person back to: the payment's status, in plain words."""
    payment = await session.get(Payment, payment_id)
    if payment is None:
        return HTMLResponse("<h1>Unknown payment</h1>", status_code=404)
    refresh = (
        "<meta http-equiv='refresh' content='3'>" if payment.status == PaymentStatus.PENDING else ""
    )
    amount = f"{format_minor_units(payment.amount, payment.currency)} {payment.currency}"
    message = MESSAGES.get(payment.status, f"Payment {payment.status}.")
    return HTMLResponse(
        f"<!doctype html><html><head><meta charset='utf-8'>{refresh}<title>Payment</title></head>"
        "<body style='font-family:system-ui;max-width:480px;margin:60px auto'>"
        f"<h1 id='status' data-status='{escape(payment.status)}'>{escape(message)}</h1>"
        f"<p>{escape(payment.description)} — {escape(amount)}</p></body></html>"
    )
