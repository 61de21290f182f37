"""Internal payments API (our own services only: internal tokens)."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

from fastapi import APIRouter, Response, status

from payment_gateway.deps import ProvidersDep, SessionDep, SettingsDep
from payment_gateway.payments import batch, cancel, service
from payment_gateway.payments.schemas import (
    OffSessionBatchIn,
    OffSessionBatchOut,
    PaymentIn,
    PaymentOut,
)
from shared.auth import InternalServicePrincipal
from shared.db import commit

router = APIRouter(prefix="/internal/v1/payments", tags=["payments"])


@router.post(
    "",
    response_model=PaymentOut,
    status_code=status.HTTP_201_CREATED,
    response_description="A new payment.",
    responses={200: {"model": PaymentOut, "description": "The payment_id is known: that payment."}},
)
async def create_payment(
    body: PaymentIn,
    response: Response,
    principal: InternalServicePrincipal,
    session: SessionDep,
    providers: ProvidersDep,
    settings: SettingsDep,
) -> PaymentOut:
    """Create a checkout or charge a saved method; idempotent on payment_id."""
    try:
        payment, created = await service.create_payment(
            session,
            providers,
            body,
            checkout_ttl=timedelta(minutes=settings.checkout_ttl_minutes),
        )
    except service.ProviderOutcomeUnknown:
        # The provider may have acted on a call whose answer we could not read: the payment
        # stays recorded (pending) for its webhook or a refresh, and the 502 is answered after.
        await commit(session)
        raise
    if not created:
        response.status_code = status.HTTP_200_OK
    return payment


@router.post("/off-session/batch", response_model=OffSessionBatchOut)
async def charge_off_session_batch(
    body: OffSessionBatchIn,
    principal: InternalServicePrincipal,
    session: SessionDep,
    providers: ProvidersDep,
) -> OffSessionBatchOut:
    """Charge up to 200 saved methods; each idempotent on its payment_id, answered per charge."""
    results = await batch.charge_off_session_many(session, providers, body.charges)
    return OffSessionBatchOut(results=results)


@router.get("/{payment_id}", response_model=PaymentOut)
async def get_payment(
    payment_id: UUID,
    principal: InternalServicePrincipal,
    session: SessionDep,
    providers: ProvidersDep,
    settings: SettingsDep,
    refresh: bool = False,
) -> PaymentOut:
    """A payment's state; refresh=true asks the provider and applies what it says."""
    return await service.get_payment(
        session,
        providers,
        payment_id,
        refresh=refresh,
        checkout_ttl=timedelta(minutes=settings.checkout_ttl_minutes),
    )


@router.post("/{payment_id}/cancel", response_model=PaymentOut)
async def cancel_payment(
    payment_id: UUID,
    principal: InternalServicePrincipal,
    session: SessionDep,
    providers: ProvidersDep,
) -> PaymentOut:
    """End an off-session charge still awaiting confirmation; answers its final state."""
    return await cancel.cancel_payment(session, providers, payment_id)
