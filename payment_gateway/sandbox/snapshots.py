"""What the sandbox tells the gateway about a payment: its state, refunds and dispute, in the
provider protocol's terms (:class:`payment_gateway.providers.base.ProviderPayment`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from payment_gateway.providers import base
from payment_gateway.sandbox.models import (
    SandboxCharge,
    SandboxDispute,
    SandboxRefund,
    SandboxSession,
)


async def session_snapshot(db: AsyncSession, checkout: SandboxSession) -> base.ProviderPayment:
    status = {
        "open": base.ProviderStatus.PENDING,
        "succeeded": base.ProviderStatus.SUCCEEDED,
        "failed": base.ProviderStatus.FAILED,
        "expired": base.ProviderStatus.EXPIRED,
    }[checkout.status]
    return base.ProviderPayment(
        provider_ref=checkout.id,
        status=status,
        amount=checkout.amount,
        currency=checkout.currency,
        charge_ref=checkout.id if status is base.ProviderStatus.SUCCEEDED else None,
        payment_method_ref=checkout.payment_method_id,
        customer_ref=f"cus_sb_{checkout.customer_id.hex}",
        failure_code=checkout.failure_code,
        failure_message="the card was declined" if checkout.failure_code else None,
        # only a paid session can have been refunded or disputed
        refunds=await refunds_of(db, checkout.id) if checkout.status == "succeeded" else (),
        **(await dispute_fields(db, checkout.id) if checkout.status == "succeeded" else {}),
    )


async def charge_snapshot(db: AsyncSession, charge: SandboxCharge) -> base.ProviderPayment:
    snapshot = charge_snapshot_of(charge, refunds=await refunds_of(db, charge.id))
    return replace(snapshot, **await dispute_fields(db, charge.id))


def charge_snapshot_of(
    charge: SandboxCharge, *, refunds: tuple[base.ProviderRefund, ...]
) -> base.ProviderPayment:
    """An off-session charge with the refunds given (and no dispute: a new charge has none)."""
    succeeded = charge.status == "succeeded"
    return base.ProviderPayment(
        provider_ref=charge.id,
        status=base.ProviderStatus.SUCCEEDED if succeeded else base.ProviderStatus.FAILED,
        amount=charge.amount,
        currency=charge.currency,
        charge_ref=charge.id if succeeded else None,
        payment_method_ref=charge.payment_method_id,
        customer_ref=f"cus_sb_{charge.customer_id.hex}",
        failure_code=charge.failure_code,
        failure_message="the saved card was declined" if charge.failure_code else None,
        refunds=refunds,
    )


def refund_snapshot(refund: SandboxRefund) -> base.ProviderRefund:
    return base.ProviderRefund(
        provider_ref=refund.id,
        amount=refund.amount,
        status=base.RefundStatus(refund.status),
        refund_id=refund.refund_id,
        failure_message="more than the remaining captured amount, or the payment is disputed"
        if refund.status == "failed"
        else None,
    )


async def refunds_of(db: AsyncSession, ref: str) -> tuple[base.ProviderRefund, ...]:
    rows = await db.scalars(
        sa.select(SandboxRefund)
        .where(SandboxRefund.payment_ref == ref)
        .order_by(SandboxRefund.created_at)
    )
    return tuple(refund_snapshot(row) for row in rows)


async def dispute_fields(db: AsyncSession, ref: str) -> dict[str, Any]:
    """The dispute fields of a snapshot (empty when the payment is not disputed)."""
    dispute = await db.scalar(sa.select(SandboxDispute).where(SandboxDispute.payment_ref == ref))
    if dispute is None:
        return {}
    return {
        "disputed": True,
        "dispute_reason": dispute.reason,
        "dispute_amount": dispute.amount,
        "dispute_ref": dispute.id,
    }
