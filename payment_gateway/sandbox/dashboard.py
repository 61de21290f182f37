"""The sandbox's dashboard: money moved at the provider without the gateway asking.

In Stripe, staff can refund a payment from the dashboard and a payer's bank can open a dispute;
neither goes through our API, and both reach the gateway only as webhooks. These endpoints do
the same in the sandbox, so that path can be tried end to end: the sandbox records the refund or
dispute on its side and sends the signed webhook (``refund.succeeded``,
``charge.dispute.created``) exactly as for its other events.

``payment`` is the gateway's payment id (billing's) or the sandbox's own reference
(``cs_sb_…``, ``pi_sb_…``). Our own internal tokens only: this moves (sandbox) money.
"""

from __future__ import annotations

from fastapi import APIRouter, status
from pydantic import BaseModel, ConfigDict, Field

from payment_gateway.deps import SandboxDep
from shared.auth import InternalServicePrincipal
from shared.money import Amount

router = APIRouter(prefix="/sandbox/dashboard", tags=["sandbox"])


class DashboardRefundIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"amount": 29900, "reason": "refunded by support"}]},
    )

    amount: Amount | None = Field(None, gt=0, description="Default: everything not refunded yet.")
    reason: str | None = Field(None, max_length=200)


class DashboardRefundOut(BaseModel):
    id: str
    payment_ref: str
    amount: int
    status: str


class DisputeIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{}]})

    reason: str = Field("fraudulent", min_length=1, max_length=64)


class DisputeOut(BaseModel):
    id: str
    payment_ref: str
    amount: int
    reason: str


@router.post(
    "/payments/{payment}/refunds",
    response_model=DashboardRefundOut,
    status_code=status.HTTP_201_CREATED,
    responses={404: {"description": "no captured payment"}, 409: {"description": "too much"}},
)
async def refund_from_dashboard(
    payment: str, body: DashboardRefundIn, provider: SandboxDep, principal: InternalServicePrincipal
) -> DashboardRefundOut:
    """Refund a captured sandbox payment as staff would in the provider's dashboard."""
    refund = await provider.dashboard_refund(payment, amount=body.amount, reason=body.reason)
    return DashboardRefundOut(
        id=refund.id, payment_ref=refund.payment_ref, amount=refund.amount, status=refund.status
    )


@router.post(
    "/payments/{payment}/disputes",
    response_model=DisputeOut,
    status_code=status.HTTP_201_CREATED,
    responses={404: {"description": "no captured payment"}, 409: {"description": "disputed"}},
)
async def open_dispute(
    payment: str, body: DisputeIn, provider: SandboxDep, principal: InternalServicePrincipal
) -> DisputeOut:
    """Open a dispute (chargeback) against a captured sandbox payment, as the payer's bank."""
    dispute = await provider.open_dispute(payment, reason=body.reason)
    return DisputeOut(
        id=dispute.id, payment_ref=dispute.payment_ref, amount=dispute.amount, reason=dispute.reason
    )
