"""Internal refunds API (our own services only: internal tokens)."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, status

from payment_gateway.deps import ProvidersDep, SessionDep
from payment_gateway.payments.service import ProviderOutcomeUnknown
from payment_gateway.refunds import service
from payment_gateway.refunds.schemas import RefundIn, RefundOut
from shared.auth import InternalServicePrincipal
from shared.db import commit

router = APIRouter(prefix="/internal/v1/refunds", tags=["refunds"])


@router.post("", response_model=RefundOut, status_code=status.HTTP_201_CREATED)
async def create_refund(
    body: RefundIn,
    principal: InternalServicePrincipal,
    session: SessionDep,
    providers: ProvidersDep,
) -> RefundOut:
    """Refund (part of) a captured payment; idempotent on refund_id."""
    try:
        return await service.create_refund(session, providers, body)
    except ProviderOutcomeUnknown:
        # The provider may have made the refund: it stays recorded (pending, its amount held
        # back from further refunds) for the provider's report to settle; 502 after the commit.
        await commit(session)
        raise


@router.get("/{refund_id}", response_model=RefundOut)
async def get_refund(
    refund_id: UUID,
    principal: InternalServicePrincipal,
    session: SessionDep,
    providers: ProvidersDep,
    refresh: bool = False,
) -> RefundOut:
    """A refund's state; with refresh=true a pending one is asked of the provider first."""
    return await service.get_refund(session, providers, refund_id, refresh=refresh)
