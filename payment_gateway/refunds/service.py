"""Refunds: idempotent on billing's ``refund_id``; never more than was captured.

The amount is reserved on the payment (``refunded_amount``, bounded by a database check) before
the provider is asked, and released only if the provider reports the refund failed.

A refund whose provider call ended without an answer we could read (the connection dropped, the
provider answered 5xx or nonsense) stays ``pending``: the provider may or may not have made it.
If it did, its report (webhook) settles it. If it did not, nothing ever would, and the customer
would wait for money that is not coming: so a ``refresh`` of such a refund (billing's
reconciliation asks for one) first reads the payment's refunds at the provider, and when ours is
not among them asks the provider again **under the same refund id** with the same request, as
the providers tell a client to do after an unknown outcome. Every provider makes at most one
refund per id (Stripe's and YooKassa's idempotency keys, the sandbox's ``refund_id``), so asking
again either makes it now or answers the one made meanwhile. Idempotency keys expire after a day
at Stripe and YooKassa, so a refund older than :data:`REASK_WITHIN` is not asked again: no call
of it can still be on its way by then, so one the provider still does not list was never made,
and it fails (billing tells the customer, who may ask again; nothing was reserved twice). The
provider's list is complete (the adapters page through it), and a provider that refuses the
second ask (say the rest was refunded in its dashboard meanwhile) keeps the refund pending until
then.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, replace
from datetime import timedelta
from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from payment_gateway.models import Payment, PaymentStatus, Refund, RefundState
from payment_gateway.payments import state
from payment_gateway.payments.reconcile import (
    apply_refund,
    apply_snapshot,
    fail_refund,
    settle_status,
)
from payment_gateway.payments.service import (
    PaymentNotFound,
    ProviderOutcomeUnknown,
    ProviderUnavailable,
    order_lines,
)
from payment_gateway.providers import base
from payment_gateway.providers.registry import Providers
from payment_gateway.refunds.schemas import RefundIn, RefundOut
from shared import clock
from shared.errors import Conflict, NotFound

logger = logging.getLogger(__name__)

REASK_WITHIN = timedelta(hours=20)
"""How old a refund in doubt may be and still be asked of its provider again (its idempotency
key must still be remembered there: 24 hours at Stripe and YooKassa)."""

NEVER_MADE = "the provider never made this refund (its request was lost); it can be asked again"


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

    lines = order_lines(request.order_lines)
    refund = Refund(
        id=request.refund_id,
        payment_id=payment.id,
        amount=request.amount,
        currency=payment.currency,
        reason=request.reason,
        status=RefundState.PENDING,
        order_lines=[asdict(line) for line in lines],
    )
    payment.refunded_amount += request.amount  # checked by the database as well
    session.add(refund)
    await session.flush()
    try:
        observed = await providers.get(payment.provider).refund(_ask(payment, refund, lines))
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


def _ask(payment: Payment, refund: Refund, lines: tuple[base.OrderLine, ...]) -> base.RefundRequest:
    assert payment.charge_ref is not None, "a refundable payment has a captured charge"
    return base.RefundRequest(
        refund_id=refund.id,
        payment_id=payment.id,
        payment_provider_ref=payment.charge_ref,
        amount=refund.amount,
        currency=refund.currency,
        reason=refund.reason,
        order_lines=lines,
        customer_email=payment.customer_email,
        description=payment.description,
    )


def _stored_lines(stored: list[dict[str, Any]]) -> tuple[base.OrderLine, ...]:
    return tuple(base.OrderLine(**line) for line in stored)


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
        if refund.status == RefundState.PENDING and refund.provider_ref is None:
            await _ask_again(session, providers, payment, refund)
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


async def _ask_again(
    session: AsyncSession, providers: Providers, payment: Payment, refund: Refund
) -> None:
    """The provider does not list the refund in doubt: ask it again under the same id (see the
    module). Past :data:`REASK_WITHIN` no call of it can still be on its way, and the provider's
    list is the truth: it was never made, so it fails (its amount is refundable again)."""
    if refund.created_at < clock.now() - REASK_WITHIN:
        logger.warning(
            "refund in doubt is still not listed by its provider: it was never made",
            extra={"refund_id": str(refund.id), "payment_id": str(payment.id)},
        )
        await fail_refund(session, payment, refund, NEVER_MADE)
        await settle_status(session, payment)
        return
    logger.warning(
        "refund in doubt is not listed by its provider; asking again under its id",
        extra={"refund_id": str(refund.id), "payment_id": str(payment.id)},
    )
    try:
        observed = await providers.get(payment.provider).refund(
            _ask(payment, refund, _stored_lines(refund.order_lines))
        )
    except base.ProviderError as exc:
        raise ProviderUnavailable(f"payment provider error: {exc}") from exc
    await apply_refund(session, payment, replace(observed, refund_id=refund.id))
    await settle_status(session, payment)
