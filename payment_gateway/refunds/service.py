"""Refunds: idempotent on billing's ``refund_id``; never more than was captured.

The amount is reserved on the payment (``refunded_amount``, bounded by a database check) before
the provider is asked, and released only if the provider reports the refund failed.
"""

from __future__ import annotations

from dataclasses import replace
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from payment_gateway.models import Payment, PaymentStatus, Refund, RefundState
from payment_gateway.payments import state
from payment_gateway.payments.reconcile import apply_refund, apply_snapshot, settle_status
from payment_gateway.payments.service import (
    PaymentNotFound,
    ProviderOutcomeUnknown,
    ProviderUnavailable,
    order_lines,
)
from payment_gateway.providers import base
from payment_gateway.providers.registry import Providers
from payment_gateway.refunds.schemas import RefundIn, RefundOut
from shared.errors import Conflict, NotFound


class RefundNotFound(NotFound):
    default_detail = "no such refund"


class RefundIdReused(Conflict):
    default_detail = "this refund_id was already used for a different refund"


class PaymentNotRefundable(Conflict):
    default_detail = "the payment has no captured money to refund"


class RefundExceedsPayment(Conflict):
    default_detail = "the refunds of a payment cannot exceed what was paid"


def to_out(refund: Refund, payment: Payment) -> RefundOut:
    return RefundOut(
        refund_id=refund.id,
        payment_id=refund.payment_id,
        amount=refund.amount,
        currency=refund.currency,
        status=refund.status,
        provider_ref=refund.provider_ref,
        failure_message=refund.failure_message,
        payment_status=payment.status,
        receipt_registration=refund.receipt_registration,
    )


async def create_refund(
    session: AsyncSession, providers: Providers, request: RefundIn
) -> RefundOut:
    payment = await session.get(Payment, request.payment_id, with_for_update=True)
    if payment is None:
        raise PaymentNotFound(f"payment {request.payment_id} not found")
    existing = await session.get(Refund, request.refund_id, with_for_update=True)
    if existing is not None:
        if (existing.payment_id, existing.amount) != (request.payment_id, request.amount):
            raise RefundIdReused(f"refund {existing.id} exists for another payment or amount")
        return to_out(existing, payment)
    if not state.is_refundable(PaymentStatus(payment.status)):
        raise PaymentNotRefundable(f"payment {payment.id} is {payment.status}")
    # Checked before the provider reference: a card-saving checkout (amount 0) has none.
    left = payment.amount - payment.refunded_amount
    if request.amount > left:
        raise RefundExceedsPayment(f"at most {left} {payment.currency} can still be refunded")
    if not payment.charge_ref:
        raise PaymentNotRefundable(f"payment {payment.id} has no captured charge")

    refund = Refund(
        id=request.refund_id,
        payment_id=payment.id,
        amount=request.amount,
        currency=payment.currency,
        reason=request.reason,
        status=RefundState.PENDING,
    )
    payment.refunded_amount += request.amount  # checked by the database as well
    session.add(refund)
    await session.flush()
    try:
        observed = await providers.get(payment.provider).refund(
            base.RefundRequest(
                refund_id=refund.id,
                payment_id=payment.id,
                payment_provider_ref=payment.charge_ref,
                amount=refund.amount,
                currency=refund.currency,
                reason=request.reason,
                order_lines=order_lines(request.order_lines),
                customer_email=payment.customer_email,
                description=payment.description,
            )
        )
    except base.ProviderAnswerUnreadable as exc:
        # Kept pending (the route commits): the provider may have refunded, and its report
        # (webhook, or the refunds listed by a refresh of the payment) settles this refund.
        raise ProviderOutcomeUnknown(f"payment provider error: {exc}") from exc
    except base.ProviderError as exc:
        raise ProviderUnavailable(f"payment provider error: {exc}") from exc
    await apply_refund(
        session,
        payment,
        base.ProviderRefund(
            provider_ref=observed.provider_ref,
            amount=observed.amount,
            status=observed.status,
            refund_id=refund.id,
            failure_message=observed.failure_message,
            receipt_registration=observed.receipt_registration,
        ),
    )
    await settle_status(session, payment)
    return to_out(refund, payment)


async def get_refund(
    session: AsyncSession, providers: Providers, refund_id: UUID, *, refresh: bool = False
) -> RefundOut:
    """Our record of a refund; with ``refresh`` a pending one is asked of the provider first
    (a refund settles later at YooKassa, and its notification may be lost)."""
    refund = await session.get(Refund, refund_id)
    if refund is None:
        raise RefundNotFound(f"refund {refund_id} not found")
    if refresh and refund.status == RefundState.PENDING:
        await _refresh(session, providers, refund)
    payment = await session.get(Payment, refund.payment_id)
    assert payment is not None
    return to_out(refund, payment)


async def _refresh(session: AsyncSession, providers: Providers, refund: Refund) -> None:
    """Lock the payment, then the refund (the suite's lock order), re-read, and apply what the
    provider says about the refund."""
    payment = await session.get(Payment, refund.payment_id, with_for_update=True)
    assert payment is not None
    await session.refresh(refund, with_for_update=True)
    if refund.status != RefundState.PENDING or not payment.provider_ref:
        return
    if refund.provider_ref is None:
        # Asked, but the answer could not be read: the provider's list of the payment's refunds
        # says whether it was made (found by our refund_id), as a refresh of the payment does.
        try:
            snapshot = await providers.get(payment.provider).fetch_payment(payment.provider_ref)
        except base.ProviderError as exc:
            raise ProviderUnavailable(f"payment provider error: {exc}") from exc
        await apply_snapshot(session, payment, snapshot)
        return
    try:
        observed = await providers.get(payment.provider).fetch_refund(
            payment.provider_ref, refund.provider_ref
        )
    except base.ProviderError as exc:
        raise ProviderUnavailable(f"payment provider error: {exc}") from exc
    if observed is None:
        return
    await apply_refund(session, payment, replace(observed, refund_id=refund.id))
    await settle_status(session, payment)
