"""Refunds of the calling user's payments."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, status

from billing_api.deps import CustomerDep, GatewayDep, SessionDep
from billing_api.refunds import service
from billing_api.refunds.schemas import RefundIn, RefundOut, RefundQuoteOut
from shared.ratelimit import per_user_and_ip

router = APIRouter(prefix="/api/v1/payments", tags=["refunds"])


@router.get("/{payment_id}/refund-quote", response_model=RefundQuoteOut)
async def get_refund_quote(
    payment_id: UUID, customer: CustomerDep, session: SessionDep
) -> RefundQuoteOut:
    """How much refunding my payment would give back now, and the rule applied."""
    return await service.get_refund_quote(session, customer.id, payment_id)


@router.post(
    "/{payment_id}/refund",
    response_model=RefundOut,
    status_code=status.HTTP_201_CREATED,
    dependencies=[per_user_and_ip("refund")],
)
async def refund_payment(
    payment_id: UUID,
    customer: CustomerDep,
    session: SessionDep,
    gateway: GatewayDep,
    body: RefundIn | None = None,
) -> RefundOut:
    """Refund my payment: everything the refund rules allow now (409 when nothing is left)."""
    return await service.request_refund(
        session, gateway, customer.id, payment_id, reason=body.reason if body else None
    )
