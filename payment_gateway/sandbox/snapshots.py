"""What the sandbox tells the gateway about a payment: its state, refunds and dispute, in the
provider protocol's terms (:class:`payment_gateway.providers.base.ProviderPayment`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncSession

from payment_gateway.providers import base
from payment_gateway.providers.declines import is_hard_decline
from payment_gateway.sandbox import cards
from payment_gateway.sandbox.models import (
    SandboxCharge,
    SandboxDispute,
    SandboxRefund,
    SandboxSession,
)
from shared.events import CardSummary


def _card(
    brand: str | None, last4: str | None, exp_month: int | None, exp_year: int | None
) -> CardSummary | None:
    """What the sandbox shows of a card (as Stripe's ``payment_method.card``), when it has one."""
    if last4 is None:
        return None
    return CardSummary(brand=brand, last4=last4, exp_month=exp_month, exp_year=exp_year)


async def session_snapshot(db: AsyncSession, checkout: SandboxSession) -> base.ProviderPayment:
    if checkout.status != "succeeded":  # only a paid session can have been refunded or disputed
        return session_snapshot_of(checkout, refunds=(), dispute=None)
    dispute = await db.scalar(
        sa.select(SandboxDispute).where(SandboxDispute.payment_ref == checkout.id)
    )
    return session_snapshot_of(checkout, refunds=await refunds_of(db, checkout.id), dispute=dispute)


def session_snapshot_of(
    checkout: SandboxSession,
    *,
    refunds: tuple[base.ProviderRefund, ...],
    dispute: SandboxDispute | None,
) -> base.ProviderPayment:
    status = {
        "open": base.ProviderStatus.PENDING,
        "succeeded": base.ProviderStatus.SUCCEEDED,
        "failed": base.ProviderStatus.FAILED,
        "expired": base.ProviderStatus.EXPIRED,
    }[checkout.status]
    paid = status is base.ProviderStatus.SUCCEEDED
    return base.ProviderPayment(
        provider_ref=checkout.id,
        status=status,
        amount=checkout.amount,
        currency=checkout.currency,
        charge_ref=checkout.id if paid else None,
        payment_method_ref=checkout.payment_method_id,
        customer_ref=f"cus_sb_{checkout.customer_id.hex}",
        failure_code=checkout.failure_code,
        failure_message=cards.declined_message(checkout.failure_code)
        if checkout.failure_code
        else None,
        hard_decline=is_hard_decline(checkout.failure_code),
        card=_card(
            checkout.card_brand,
            checkout.card_last4,
            checkout.card_exp_month,
            checkout.card_exp_year,
        )
        if paid
        else None,
        # only a paid session can have been refunded or disputed
        refunds=refunds if paid else (),
        **(_dispute_fields_of(dispute) if paid else {}),
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
        status=_CHARGE_STATUSES[charge.status],
        amount=charge.amount,
        currency=charge.currency,
        charge_ref=charge.id if succeeded else None,
        payment_method_ref=charge.payment_method_id,
        customer_ref=f"cus_sb_{charge.customer_id.hex}",
        failure_code=None if succeeded else charge.failure_code,
        failure_message=None if succeeded else _charge_failure(charge.failure_code),
        hard_decline=is_hard_decline(charge.failure_code),
        card=_card(
            charge.card_brand, charge.card_last4, charge.card_exp_month, charge.card_exp_year
        ),
        refunds=refunds,
        action_url=charge.action_url if charge.status == "requires_action" else None,
    )


_CHARGE_STATUSES = {
    "succeeded": base.ProviderStatus.SUCCEEDED,
    "failed": base.ProviderStatus.FAILED,
    "requires_action": base.ProviderStatus.REQUIRES_ACTION,
    "canceled": base.ProviderStatus.FAILED,
}
_CHARGE_FAILURES = {
    "authentication_required": "the cardholder must confirm this charge",
    "payment_intent_authentication_failure": "the cardholder did not confirm this charge",
    "canceled": "the charge was not confirmed in time and was cancelled",
}


def _charge_failure(code: str | None) -> str | None:
    if code is None:
        return None
    return _CHARGE_FAILURES.get(code) or cards.declined_message(code)


def refund_snapshot(refund: SandboxRefund) -> base.ProviderRefund:
    return _refund(refund.id, refund.amount, refund.status, refund.refund_id)


def _refund(ref: str, amount: int, status: str, refund_id: UUID | None) -> base.ProviderRefund:
    return base.ProviderRefund(
        provider_ref=ref,
        amount=amount,
        status=base.RefundStatus(status),
        refund_id=refund_id,
        failure_message="more than the remaining captured amount, or the payment is disputed"
        if status == "failed"
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
    return _dispute_fields_of(dispute)


def _dispute_fields_of(dispute: SandboxDispute | None) -> dict[str, Any]:
    if dispute is None:
        return {}
    return {
        "disputed": True,
        "dispute_reason": dispute.reason,
        "dispute_amount": dispute.amount,
        "dispute_ref": dispute.id,
    }


Found = tuple[
    SandboxSession | SandboxCharge, tuple[base.ProviderRefund, ...], SandboxDispute | None
]


async def read_many(db: AsyncSession, refs: Sequence[str]) -> dict[str, Found]:
    """Sessions and charges by reference with their refunds and dispute, in one query.

    What :func:`session_snapshot` and :func:`charge_snapshot` read one payment at a time, for
    a batch of webhooks; a reference the sandbox does not know is left out.
    """
    if not refs:
        return {}
    wanted = sa.values(sa.column("ref", sa.String), name="wanted").data([(ref,) for ref in refs])
    refunds = (
        sa.select(
            sa.func.jsonb_agg(
                aggregate_order_by(
                    sa.func.jsonb_build_array(
                        SandboxRefund.id,
                        SandboxRefund.amount,
                        SandboxRefund.status,
                        SandboxRefund.refund_id,
                    ),
                    SandboxRefund.created_at,
                ),
                type_=JSONB,
            )
        )
        .where(SandboxRefund.payment_ref == wanted.c.ref)
        .scalar_subquery()
    )
    rows = await db.execute(
        sa.select(wanted.c.ref, SandboxSession, SandboxCharge, SandboxDispute, refunds)
        .select_from(wanted)
        .outerjoin(SandboxSession, SandboxSession.id == wanted.c.ref)
        .outerjoin(SandboxCharge, SandboxCharge.id == wanted.c.ref)
        .outerjoin(SandboxDispute, SandboxDispute.payment_ref == wanted.c.ref)
    )
    found: dict[str, Found] = {}
    for ref, checkout, charge, dispute, refund_rows in rows:
        payment = checkout or charge
        if payment is not None:
            made = tuple(
                _refund(id_, amount, status, UUID(refund_id) if refund_id else None)
                for id_, amount, status, refund_id in refund_rows or ()
            )
            found[ref] = (payment, made, dispute)
    return found


def snapshot_of(found: Found) -> base.ProviderPayment:
    payment, refunds, dispute = found
    if isinstance(payment, SandboxSession):
        return session_snapshot_of(payment, refunds=refunds, dispute=dispute)
    return replace(charge_snapshot_of(payment, refunds=refunds), **_dispute_fields_of(dispute))
