"""What is left of a captured sandbox payment, read under its row lock.

Refunds asked by the gateway, refunds made in the dashboard and disputes opened by the payer's
bank all lock the payment's row first, so what is left is never handed out twice.
"""

from __future__ import annotations

from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from payment_gateway.sandbox.models import SandboxCharge, SandboxRefund, SandboxSession
from shared.errors import NotFound


class PaymentNotCaptured(NotFound):
    default_detail = "the sandbox captured no money for this payment"


async def captured(db: AsyncSession, ref: str) -> tuple[int, UUID | None]:
    """What the payment captured and its id, its row locked (as the dashboard locks it)."""
    if ref.startswith("pi_sb_"):
        charge = await db.get(SandboxCharge, ref, with_for_update=True)
        if charge is not None and charge.status == "succeeded":
            return charge.amount, charge.payment_id
    else:
        checkout = await db.get(SandboxSession, ref, with_for_update=True)
        if checkout is not None and checkout.status == "succeeded":
            return checkout.amount, checkout.payment_id
    return 0, None


async def refunded(db: AsyncSession, ref: str) -> int:
    """What succeeded refunds took of the payment ``ref`` so far."""
    total = await db.scalar(
        sa.select(sa.func.coalesce(sa.func.sum(SandboxRefund.amount), 0)).where(
            SandboxRefund.payment_ref == ref, SandboxRefund.status == "succeeded"
        )
    )
    return int(total or 0)


async def refundable(db: AsyncSession, payment: str) -> tuple[str, UUID | None, int]:
    """The captured payment's reference and id, and what is left of it, locked.

    ``payment`` is the sandbox's reference or the gateway's payment id."""
    try:
        by_id: UUID | None = UUID(payment)
    except ValueError:
        by_id = None
    found: SandboxSession | SandboxCharge | None
    if by_id is not None:
        found = await db.scalar(
            sa.select(SandboxSession).where(SandboxSession.payment_id == by_id)
        ) or await db.scalar(sa.select(SandboxCharge).where(SandboxCharge.payment_id == by_id))
    elif payment.startswith("pi_sb_"):
        found = await db.get(SandboxCharge, payment)
    else:
        found = await db.get(SandboxSession, payment)
    if found is None or found.status != "succeeded" or found.amount <= 0:
        raise PaymentNotCaptured(f"no captured sandbox payment {payment}")
    await db.refresh(found, with_for_update=True)  # refunds of one payment line up
    return found.id, found.payment_id, found.amount - await refunded(db, found.id)
